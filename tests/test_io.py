"""Atomic writes: permissions follow the umask; safetensors files are byte-reproducible; a full disk is
one line naming the file, with the previous file kept."""

from __future__ import annotations

import errno
import json
import os
import signal
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


FULL = "No space left on device (errno 28); free space on that disk and run the same command again"


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, writer):
    """A full disk on NFS says so only at fsync (or close): one line naming the destination, which
    keeps its previous contents, and no temporary file left."""
    path = tmp_path / f"out.{writer}"
    path.write_bytes(b"old")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(io.WriteError) as e:
        WRITERS[writer](path)
    assert str(e.value) == f"cannot write {path}: {FULL}"
    assert isinstance(e.value, OSError) and isinstance(e.value, ValueError) and e.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("code, reworded", [(errno.ENOSPC, True), (errno.EIO, True), (errno.ECONNRESET, False)])
def test_only_the_disks_refusals_are_reworded(tmp_path, code, reworded):
    """A download that fails inside the block keeps its own error; a write the disk refuses names the file."""
    path = tmp_path / "x.bin"
    with pytest.raises(OSError) as e, io.atomic_path(path) as tmp:
        tmp.write_bytes(b"partial")
        raise OSError(code, os.strerror(code))
    assert isinstance(e.value, io.WriteError) == reworded
    assert str(e.value).startswith(f"cannot write {path}: ") == reworded and "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_the_file_is_synced_before_its_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.fstat(fd).st_ino)), fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", os.stat(a).st_ino)), replace(a, b))[1])
    path = tmp_path / "out.json"
    io.write_json(path, {"a": 1})
    file, folder = path.stat().st_ino, tmp_path.stat().st_ino
    assert events == [("fsync", file), ("replace", file), ("fsync", folder)]


_FILL_DISK = """
import json, resource, signal, sys
from pathlib import Path
import pandas as pd, torch
from mimetic import io


def atomic_direct(path):
    with io.atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(b"x" * 10000)


# Over the limit a write fails with EFBIG, a real refusal from the kernel (SIGXFSZ would kill the process).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
writers = {
    "json": lambda p: io.write_json(p, list(range(5000))),
    "csv": lambda p: io.write_csv(p, pd.DataFrame({"a": range(5000)})),
    "text": lambda p: io.write_text(p, "x" * 10000),
    "safetensors": lambda p: io.write_safetensors(p, {"w": torch.ones(5000)}),
    "torch_save": lambda p: io.torch_save(p, {"w": torch.ones(5000)}),
    "atomic_path": atomic_direct,
}
for name, write in writers.items():
    try:
        write(Path(sys.argv[1]) / f"out.{name}")
        print(json.dumps([name, None]))
    except io.WriteError as e:
        print(json.dumps([name, str(e)]))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_every_writer_names_the_file_when_the_kernel_refuses_the_write(tmp_path):
    """Past `ulimit -f` the kernel refuses the write itself, as a full disk does: each writer (torch's
    zip writer too, which says "unexpected pos" with no errno) gives the one line naming its file."""
    for name in WRITERS:
        (tmp_path / f"out.{name}").write_bytes(b"old")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", _FILL_DISK, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    errors = dict(json.loads(line) for line in done.stdout.splitlines())
    limit = "the file is larger than that filesystem or `ulimit -f` allows"
    assert errors == {name: f"cannot write {tmp_path / f'out.{name}'}: File too large (errno 27); {limit}; write to "
                            "another disk or lift the limit" for name in WRITERS}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"out.{name}" for name in WRITERS)
    assert all(p.read_bytes() == b"old" for p in tmp_path.iterdir())
