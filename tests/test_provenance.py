"""Run records name the code they ran: git commit and dirty flag, or version and source hash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mimetic import provenance

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mimetic"
FIELDS = {"python", "torch", "timm", "numpy", "mimetic", "git_commit", "git_dirty", "source_sha256", "host"}

_PRINT_ENV = "import json, mimetic.provenance as p; print(json.dumps(p.environment()))"


def _copy_package(dest: Path) -> Path:
    shutil.copytree(PACKAGE, dest / "mimetic", ignore=shutil.ignore_patterns("__pycache__"))
    return dest / "mimetic"


def _environment_from(src: Path) -> dict:
    """environment() as a fresh interpreter sees it, importing the package from `src`."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", _PRINT_ENV], env=env, cwd=src, capture_output=True, text=True,
                         check=True, timeout=300).stdout
    return json.loads(out)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=repo,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_source_hash_follows_paths_and_contents(tmp_path):
    package = _copy_package(tmp_path)
    before = provenance.source_sha256(package)
    assert before == provenance.source_sha256(package)
    (package / "io.py").write_text((package / "io.py").read_text() + "\n# changed\n")
    changed = provenance.source_sha256(package)
    (package / "io.py").rename(package / "io2.py")
    assert len({before, changed, provenance.source_sha256(package)}) == 3
    (package / "notes.txt").write_text("not code")  # only *.py files count
    (package / "__pycache__").mkdir(exist_ok=True)
    (package / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert provenance.source_sha256(package) == provenance.source_sha256(package)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_outside_git_records_version_and_source_hash(tmp_path):
    package = _copy_package(tmp_path)
    assert subprocess.run(["git", "rev-parse"], cwd=tmp_path, capture_output=True, check=False).returncode  # not in git
    env = _environment_from(tmp_path)
    assert FIELDS <= set(env)
    assert env["git_commit"] is None and env["git_dirty"] is None
    assert env["source_dir"] == str(package.resolve())
    assert env["mimetic"] and env["source_sha256"] == provenance.source_sha256(package)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_checkout_records_commit_and_dirty_flag(tmp_path):
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    package = _copy_package(repo / "src")
    (repo / "README.md").write_text("readme\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "code")
    head = _git(repo, "rev-parse", "HEAD")

    env = _environment_from(repo / "src")
    assert FIELDS <= set(env)
    assert env["git_commit"] == head and env["git_dirty"] is False
    assert env["source_sha256"] == provenance.source_sha256(package)

    (repo / "untracked.txt").write_text("scratch")  # untracked files leave the checkout clean
    assert provenance.git_state(package) == (head, False)
    (repo / "README.md").write_text("edited\n")  # a tracked file outside the package: dirty too
    assert provenance.git_state(package) == (head, True)
    _git(repo, "checkout", "--", "README.md")
    (package / "io.py").write_text((package / "io.py").read_text() + "\n# local change\n")
    env = _environment_from(repo / "src")
    assert env["git_commit"] == head and env["git_dirty"] is True
    assert env["source_sha256"] == provenance.source_sha256(package)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_package_installed_inside_another_repository_is_not_that_repository(tmp_path):
    """A pip install (untracked files) inside some project's git checkout records no commit."""
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "a.txt").write_text("a\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "project")
    package = _copy_package(repo / "venv")
    assert provenance.git_state(package) == (None, None)
