"""Atomic file writes: a killed job never leaves a file that looks complete.

Files get the permissions a plain `open()` would give them (0666 minus the umask, plus any
default ACL of the folder), so results on a shared cluster are as readable as the user chose.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pandas as pd

if TYPE_CHECKING:  # torch on first use: the analysis commands write tables and figures only
    import torch


def _create_temp(folder: Path, name: str) -> Path:
    """A new empty file `.<name>.<random>.tmp` in `folder`, created as open() would create it."""
    # Not tempfile.mkstemp: it creates files 0600 whatever the umask. Mode 0666 here lets the kernel
    # apply the umask (and default ACLs), with no process-wide umask change that could race other threads.
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, flags, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name for {folder / name} after 100 tries")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path.parent, path.name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cache_dir() -> Path:
    """The package's cache of things it derives from its dependencies (default ~/.cache/mimetic)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mimetic"


def _write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    _write(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def write_csv(path: str | os.PathLike, df: pd.DataFrame) -> None:
    _write(path, lambda p: df.to_csv(p, index=False))


def write_text(path: str | os.PathLike, text: str) -> None:
    _write(path, lambda p: p.write_text(text))


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors file for `tensors` and `metadata`, the same bytes in every process.

    safetensors writes its JSON header from a Rust HashMap, so the metadata's key order (and with it
    the file's checksum) changes from process to process. The header is rewritten here with sorted
    keys, in safetensors' own framing: an 8-byte little-endian length, then the JSON padded with
    spaces to a multiple of 8 bytes. Offsets in the header are relative to the data, which is unchanged.
    """
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8:8 + n]), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    header_bytes = header.encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    return len(header_bytes).to_bytes(8, "little") + header_bytes + raw[8 + n:]


def write_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                      metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` as a safetensors file; identical inputs give byte-identical files."""
    data = safetensors_bytes(tensors, metadata)
    _write(path, lambda p: p.write_bytes(data))


def torch_save(path: str | os.PathLike, obj: Any) -> None:
    import torch

    _write(path, lambda p: torch.save(obj, p))
