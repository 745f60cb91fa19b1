"""Atomic writes: permissions follow the umask; safetensors files are byte-reproducible."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from mimetic import io

SRC = Path(__file__).resolve().parents[1] / "src"

WRITERS = {
    "json": lambda p: io.write_json(p, {"a": 1}),
    "csv": lambda p: io.write_csv(p, pd.DataFrame({"a": [1, 2]})),
    "text": lambda p: io.write_text(p, "hello\n"),
    "safetensors": lambda p: io.write_safetensors(p, {"w": torch.ones(2, 3)}, metadata={"k": "v"}),
    "torch_save": lambda p: io.torch_save(p, {"w": torch.ones(2)}),
    "atomic_path": lambda p: _atomic_direct(p),
}


def _atomic_direct(path: Path) -> None:
    with io.atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(b"bytes")


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_outputs_get_the_mode_open_would_give(tmp_path, umask, writer, mask, mode):
    umask(mask)
    path = tmp_path / "sub" / f"out.{writer}"
    WRITERS[writer](path)
    plain = tmp_path / "plain"
    plain.write_bytes(b"")  # what open() gives under this umask: the reference
    assert stat.S_IMODE(path.stat().st_mode) == mode == stat.S_IMODE(plain.stat().st_mode)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), io.atomic_path(tmp_path / "x.json") as tmp:
        tmp.write_text("partial")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_safetensors_header_is_sorted_padded_and_loads(tmp_path):
    tensors = {"z": torch.arange(5, dtype=torch.int64), "a": torch.randn(3, 4), "m": torch.ones(7, dtype=torch.uint8)}
    metadata = {f"key{i}": str(i) for i in range(20)}
    path = tmp_path / "t.safetensors"
    io.write_safetensors(path, tensors, metadata)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0 and raw[8:9] == b"{"
    loaded = load_file(path)
    assert sorted(loaded) == sorted(tensors) and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    with safe_open(path, "pt") as f:
        assert f.metadata() == metadata


_WRITE_ONE = """
import sys, torch
from mimetic import io
g = torch.Generator().manual_seed(0)
tensors = {f"layer{i}.{w}": torch.randn(4, 3, generator=g) for i in range(6) for w in ("weight", "bias")}
tensors["steps"] = torch.arange(9)
io.write_safetensors(sys.argv[1], tensors, metadata={f"key{i}": f"value{i}" for i in range(16)})
"""


def test_safetensors_are_byte_identical_across_processes(tmp_path):
    paths = []
    for seed in ("1", "2", "3"):
        path = tmp_path / f"seed{seed}.safetensors"
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(SRC)}
        subprocess.run([sys.executable, "-c", _WRITE_ONE, str(path)], check=True, env=env, timeout=300)
        paths.append(path)
    first = paths[0].read_bytes()
    assert all(p.read_bytes() == first for p in paths[1:])
