"""What produced a run: the code version, package versions and host, for every run record.

The code version is the git commit and whether tracked files had uncommitted changes, when the
package's source lives in a git checkout, and always the package version and a hash of its
source files, which identifies the code for an archive, a module deployment or a pip install
too (and tells two runs with uncommitted changes apart).
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path
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


def environment() -> dict[str, Any]:
    """What produced a run: code version, package versions, host."""
    import numpy
    import timm
    import torch

    import mimetic

    return {
        "python": sys.version.split()[0], "torch": torch.__version__, "timm": timm.__version__,
        "numpy": numpy.__version__, "mimetic": mimetic.__version__, **code_version(),
        "host": platform.node(),
    }


# The workflow exports MIMETIC_WORKFLOW_SOURCE (its src/mimetic folder) to its jobs. A job whose
# environment imports `mimetic` from elsewhere (another checkout's editable install, a conda env
# shared with another clone) with different code stops with one line instead of silently
# running that other code.
def check_workflow_source() -> None:
    """Raise RuntimeError if this package is not the code of the workflow that started the job."""
    expected = os.environ.get("MIMETIC_WORKFLOW_SOURCE")
    if not expected or Path(expected).resolve() == PACKAGE_DIR:
        return
    if not Path(expected).is_dir() or source_sha256(expected) != source_sha256():
        raise RuntimeError(
            f"this job imported mimetic from {PACKAGE_DIR}, but the workflow's own package is {expected} and "
            f"their code differs; install the workflow's package into this environment (pip install -e "
            f"{Path(expected).parent.parent}) or, with --sdm conda, remove the stale env under .snakemake/conda")
