"""What produced a run: the code version, package versions and host, for every run record.

The code version is the git commit and whether tracked files had uncommitted changes, when the
package's source lives in a git checkout, and always the package version and a hash of its
source files, which identifies the code for an archive, a module deployment or a pip install
too (and tells two runs with uncommitted changes apart).
"""

from __future__ import annotations

import hashlib
import html
import os
import platform
import subprocess
import sys
from pathlib import Path
from collections.abc import Sequence
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent


def source_sha256(package_dir: str | os.PathLike = PACKAGE_DIR) -> str:
    """sha256 over the package's *.py files, in sorted order of their paths relative to `package_dir`
    (posix separators): for each file, its path, a NUL byte, its size in decimal, a NUL byte, its bytes."""
    package_dir = Path(package_dir)
    digest = hashlib.sha256()
    for rel in sorted(p.relative_to(package_dir).as_posix() for p in package_dir.rglob("*.py")):
        data = (package_dir / rel).read_bytes()
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def _git(args: list[str], cwd: Path) -> str | None:
    """stdout of a git command, or None when git is missing, fails or refuses the folder."""
    # GIT_OPTIONAL_LOCKS=0: `git status` must not refresh the index of a checkout other jobs read.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, env=env,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(package_dir: str | os.PathLike = PACKAGE_DIR) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding the package source; (None, None) outside one.

    The package's own files must be tracked there: a pip install inside some other repository
    (a virtual environment in a project folder) is not that repository's code.
    """
    package_dir = Path(package_dir)
    if not _git(["ls-files", "--", "."], package_dir):
        return None, None
    commit = _git(["rev-parse", "HEAD"], package_dir)
    status = _git(["status", "--porcelain", "--untracked-files=no"], package_dir)
    if not commit or status is None:
        return None, None
    # Dirty: any tracked file of the checkout changed (workflow rules and configs shape results too).
    return commit.strip(), bool(status.strip())


def code_version(package_dir: str | os.PathLike = PACKAGE_DIR) -> dict[str, Any]:
    """git_commit and git_dirty (None outside a git checkout) and source_sha256 of the package."""
    commit, dirty = git_state(package_dir)
    return {"git_commit": commit, "git_dirty": dirty, "source_sha256": source_sha256(package_dir),
            "source_dir": str(package_dir)}


def device_name(device: Any) -> str:
    """A torch.device's name: the GPU's model, or the CPU's as Python sees it."""
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """What produced a run: code version, package versions, host. The versions are the installed
    distributions' (importlib.metadata): a language-model run imports no timm, and importing it
    for its version string would cost each run seconds."""
    from importlib.metadata import PackageNotFoundError, version

    import mimetic

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "python": sys.version.split()[0], "torch": installed("torch"), "timm": installed("timm"),
        "transformers": installed("transformers"), "numpy": installed("numpy"), "mimetic": mimetic.__version__,
        **code_version(), "host": platform.node(),
    }


def config_param(config: dict[str, Any]) -> str:
    """The resolved config as the provenance rule passes it: JSON, which `mimetic provenance
    --config` reads back as it was, with `<`, `>` and `&` written as \\u escapes.

    Snakemake's report embeds every rule's params as they are in an inline <script>: a
    `</script>` in any config string (a data root, a path) would end the script there and
    break the whole report. JSON allows these escapes in any string; keys stay sorted, so that
    reordering a config changes no param (and reruns nothing)."""
    import json

    text = json.dumps(config, sort_keys=True)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def write_page(out: str | os.PathLike, summary_files: Sequence[str | os.PathLike], config: dict[str, Any]) -> None:
    """The provenance page of the runs whose summary.json files are given, to `out`."""
    import json

    from mimetic import io

    summaries = []
    for p in summary_files:
        try:
            s = json.loads(Path(p).read_text())
        except ValueError as e:
            s = f"not JSON ({e})"
        why = (f"lacks {[k for k in ('environment', 'device', 'wall_time') if k not in s]}" if isinstance(s, dict)
               else s if isinstance(s, str) else "not a JSON object")
        if why != "lacks []":  # what the page reads of each record
            raise ValueError(f"{p}: not a run record of this version of `mimetic train` ({why}); delete the run "
                             "folder and train it again")
        summaries.append(s)
    io.write_text(out, page(summaries, config))


def page(summaries: Sequence[dict[str, Any]], config: dict[str, Any]) -> str:
    """The report's provenance page: what made the numbers (code, packages, devices, compute)
    and the resolved config, from the runs' summary.json records. Self-contained HTML."""
    from collections import Counter

    import yaml

    def table(title: str, counts: Counter, columns: Sequence[str]) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in (*columns, "runs"))
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (*key, n)) + "</tr>"
                       for key, n in sorted(counts.items(), key=str))
        return f"<h2>{html.escape(title)}</h2><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"

    env = [s["environment"] for s in summaries]
    code = Counter((e.get("git_commit"), e.get("git_dirty"), e.get("source_sha256", "")[:12], e.get("mimetic"))
                   for e in env)
    packages = Counter((e.get("python"), e.get("torch"), e.get("timm"), e.get("transformers"), e.get("numpy"))
                       for e in env)
    devices = Counter((s["device"], s.get("device_type", "?"), s.get("processes", 1), s["environment"].get("host"))
                      for s in summaries)
    wall = sum(s["wall_time"] for s in summaries)
    gpu = sum(s["wall_time"] * s.get("processes", 1) for s in summaries if s.get("device_type") == "cuda")
    compute = (f"<h2>Compute</h2><p>{len(summaries)} runs; training wall time {wall / 3600:.2f} h in total; "
               f"{gpu / 3600:.2f} GPU-hours (wall time x processes of the runs on CUDA).</p>")
    dirty = any(e.get("git_dirty") for e in env)
    warning = ("<p class='warn'>Some runs ran from a git tree with uncommitted changes: the commit alone does not "
               "identify their code; the source hash does.</p>" if dirty else "")
    style = ("body{font-family:sans-serif;max-width:60em}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #bbb;padding:.2em .6em;text-align:left}th{background:#eee}"
             ".warn{color:#a40}pre{background:#f6f6f6;padding:.6em;overflow-x:auto}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Provenance</title><style>{style}</style>"
            f"</head><body><h1>Provenance</h1>"
            + table("Code", code, ("git commit", "uncommitted changes", "source sha256", "mimetic")) + warning
            + table("Packages", packages, ("python", "torch", "timm", "transformers", "numpy"))
            + table("Devices", devices, ("device", "type", "processes", "host")) + compute
            + "<h2>Resolved config</h2><pre>" + html.escape(yaml.safe_dump(config, sort_keys=False)) + "</pre>"
            + "</body></html>\n")
