"""Atomic file writes: a killed job never leaves a file that looks complete.

Files get the permissions a plain `open()` would give them (0666 minus the umask, plus any
default ACL of the folder), so results on a shared cluster are as readable as the user chose.
A file is on the disk (fsync) before its name is: after a crash or power loss `path` holds the
old file or the new one, never an empty one. A disk that refuses a write (full, over quota, an
I/O error) raises WriteError, one line naming the file.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pandas as pd

if TYPE_CHECKING:  # torch on first use: the analysis commands write tables and figures only
    import torch


class WriteError(OSError, ValueError):
    """A write the disk refused, in one line naming the destination and what to do.

    An OSError, for callers that handle failed writes; a ValueError too, which every command of
    the CLI prints as one line (a traceback ending in `[Errno 28]` names no file)."""

    def __str__(self) -> str:
        return self.args[0]


# The errors that say the disk (not the caller) refused the write, and what to do about each.
_REFUSED = {getattr(errno, name): advice for name, advice in [
    ("ENOSPC", "free space on that disk and run the same command again"),
    ("EDQUOT", "free space under your disk quota (or ask for a larger one) and run the same command again"),
    ("EFBIG", "the file is larger than that filesystem or `ulimit -f` allows; write to another disk or lift the limit"),
    ("EIO", "the disk reported an I/O error; check it (e.g. dmesg) and run the same command again"),
    ("EROFS", "that filesystem is mounted read-only; write to another folder"),
] if hasattr(errno, name)}


def _write_error(path: Path, error: BaseException) -> WriteError | None:
    """`error` as a WriteError naming `path`, if it is the disk refusing the write."""
    if isinstance(error, WriteError) or not isinstance(error, OSError) or error.errno not in _REFUSED:
        return None
    reason = error.strerror or os.strerror(error.errno)
    e = WriteError(f"cannot write {path}: {reason} (errno {error.errno}); {_REFUSED[error.errno]}")
    e.errno, e.strerror = error.errno, reason
    return e


def _fsync(path: Path) -> None:
    """Flush `path`'s data to the disk (a full disk on NFS, or a failing one, may only say so here).
    A filesystem that cannot sync (EINVAL) is let be: the rename is atomic all the same."""
    try:
        # Read-only is enough for fsync on POSIX, and works whatever mode the umask gave the file.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        if e.errno in _REFUSED:
            raise


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable; best effort: the file is in place, and some platforms cannot sync a folder."""
    try:
        _fsync(folder)
    except OSError:
        pass


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
    """Yield a temporary path beside `path`; on success it is synced to the disk, then renamed onto `path`.

    The block closes what it opened on the temporary path (a `with open(tmp)` inside this one
    does). On any failure the temporary file is removed and a file already at `path` stays as it
    was; a write the disk refused raises WriteError naming `path`.
    """
    path, tmp = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temp(path.parent, path.name)
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass  # a failing disk: the write's own error is the one to report
        refused = _write_error(path, e)
        if refused is None:
            raise
        raise refused from e
    _fsync_folder(path.parent)


def refused_global(error: Exception) -> str | None:
    """The pickled object that torch.load(weights_only=True) refused to load (e.g. posix.system),
    from its UnpicklingError; None where the bytes were no pickle at all (a damaged file)."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error), re.IGNORECASE)  # torch words it differently by version
    return found.group(1) if found else None


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


def _torch_save(obj: Any, path: Path) -> None:
    import torch

    # Through a Python file: torch's own file writer reports a full disk as "unexpected pos 704 vs
    # 598", with no errno. Its buffer writer says the same, but keeps the OSError as the context.
    with open(path, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as e:
            if isinstance(e.__context__, OSError):
                raise e.__context__ from None
            raise


def torch_save(path: str | os.PathLike, obj: Any) -> None:
    _write(path, lambda p: _torch_save(obj, p))
