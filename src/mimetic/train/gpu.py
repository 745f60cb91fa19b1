"""GPU placement for runs that share a machine: one lock file per device slot.

Snakemake's `--resources gpu=N` bounds how many runs start at once; these locks decide which
device each run gets, so no two runs land on one GPU (or more than `slots` on one, when runs
share GPUs on purpose). The locks are flock(2) locks, which the kernel drops when the holding
process dies, even by SIGKILL: a killed run never leaves a GPU marked busy. A run takes its
devices before CUDA is initialized and exports them in CUDA_VISIBLE_DEVICES.

Under SLURM the scheduler has chosen (and often cgroup-confined) the job's GPUs, and the ids in
CUDA_VISIBLE_DEVICES are the job's own: two jobs on one node may both see a "GPU 0" that are
different devices. So the locks live in a folder of their own per SLURM job: runs inside one
allocation (`salloc --gpus=4`, then several runs) share it and get distinct devices, and runs
of different jobs never wait for each other.

The lock folder must be one that only this user can write in (checked before every use), and
lock files are opened without following symlinks and never truncated: in a shared temporary
folder another user could otherwise plant a symlink that makes a run clobber a file of its
victim's, or hold a slot. A slot held past a day is reported to the runs waiting for it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pwd
import stat
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


LONG_HOLD_S = 24 * 3600.0  # a waiting run names the holder of a slot held longer than this
_RECORD = 128  # bytes of holder record at the start of a lock file; fixed, so it is rewritten without truncating

_FIX = "set MIMETIC_GPU_LOCK_DIR to a folder of your own"


class LockError(ValueError):
    """The GPU lock folder or a lock file is unsafe to use; the message is one line naming it and what to do.

    A ValueError, which `mimetic train` ends in one line: launch.LaunchError cannot be its base, as
    mimetic.train.launch imports this module.
    """


def default_lock_dir() -> Path:
    # Node-local on purpose: a lock means "this machine's GPU k", so it must not be shared
    # across cluster nodes through a network file system. Not $XDG_RUNTIME_DIR, though it is
    # per-user: logind deletes it, lock files and all, when the user's last login session ends
    # under runs still going (nohup, Snakemake), and sbatch exports it from a login node where it
    # may not exist. The temporary folder it is, then, with the folder checked (_own_folder).
    base = Path(os.environ.get("MIMETIC_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / f"mimetic-gpu-{os.getuid()}"))
    job = os.environ.get("SLURM_JOB_ID")
    return base / f"slurm-{job}" if job else base


def visible_devices() -> list[str]:
    """The device ids this process may use: CUDA_VISIBLE_DEVICES if set, else all GPUs."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()]
    import torch  # counts devices through NVML where it can, without creating a CUDA context

    return [str(i) for i in range(torch.cuda.device_count())]


@dataclass
class Lease:
    """Devices held by this process until release() or exit."""

    devices: list[str]
    _files: list[IO] = field(default_factory=list, repr=False)

    def release(self) -> None:
        for f in self._files:
            f.close()  # closing the file drops its flock
        self._files.clear()

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a container without a passwd entry for it
        return f"uid {uid}"


def _lock_folder(lock_dir: Path | None) -> Path:
    """The lock folder, created if missing and checked; under SLURM the per-job folders' parent too."""
    if lock_dir is None:
        lock_dir = default_lock_dir()
        if os.environ.get("SLURM_JOB_ID"):
            _own_folder(lock_dir.parent)
    return _own_folder(lock_dir)


def _own_folder(path: Path) -> Path:
    """`path`, created mode 0700 if missing, once checked to be a folder that only this user can write in."""
    try:
        path.mkdir(mode=0o700, parents=True)
        os.chmod(path, 0o700)  # mkdir's mode goes through the umask, which may take the owner's own bits
    except FileExistsError:
        pass
    except OSError as e:
        raise LockError(f"cannot create the GPU lock folder {path} ({e.strerror}): {_FIX}") from None
    _check_folder(path)
    return path


def _check_folder(path: Path) -> None:
    st = os.lstat(path)
    fix = _FIX
    if stat.S_ISLNK(st.st_mode):
        why = "is a symlink, which mimetic never follows (another user may have planted it)"
        fix = f"remove it, or {fix}"
    elif not stat.S_ISDIR(st.st_mode):
        why = "is not a folder"
    elif st.st_uid != os.getuid():
        why = f"belongs to {_user(st.st_uid)}, not to you ({_user(os.getuid())})"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        why = f"is writable by other users (mode {st.st_mode & 0o777:o}), who could plant files in it"
        fix = f"`chmod 700 {path}`, or {fix}"
    else:
        return
    raise LockError(f"GPU lock folder {path} {why}: {fix}")


def _open_lock(path: Path) -> tuple[int, os.stat_result]:
    """The slot's lock file, opened without following a symlink and without truncating anything."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise LockError(f"GPU lock file {path} is a symlink, which mimetic never follows (another user may have "
                            f"planted it): remove it, or {_FIX}") from None
        raise LockError(f"cannot open the GPU lock file {path} ({e.strerror}): remove it, or {_FIX}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_nlink != 1:
        os.close(fd)  # a hard link, say: writing the holder record would change another file too
        raise LockError(f"GPU lock file {path} is not a plain file of yours with one link: remove it, or {_FIX}")
    return fd, st


@dataclass(frozen=True)
class _Held:
    """A slot another process holds: its lock file, since when (the file's mtime: its holder writes its record
    once it has the flock), and who (that record)."""

    path: Path
    since: float
    holder: str


def _try_lock(path: Path) -> IO | _Held:
    fd, st = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held = _Held(path, st.st_mtime, _holder(fd))
        os.close(fd)
        return held
    _record_holder(fd)
    return os.fdopen(fd, "r+b", buffering=0)


def _record_holder(fd: int) -> None:
    """For people who look, and for runs that wait: who holds this slot, since when. Written once the flock is held."""
    record = f"pid {os.getpid()} user {_user(os.getuid())} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}"
    with contextlib.suppress(OSError):  # informational only: a full /tmp must not stop the run
        os.pwrite(fd, record.encode()[:_RECORD - 1].ljust(_RECORD - 1) + b"\n", 0)


def _holder(fd: int) -> str:
    try:
        line = os.pread(fd, _RECORD, 0).decode(errors="replace").partition("\n")[0].strip()
    except OSError:
        return ""
    return f"pid {line}" if line.isdigit() else line  # earlier versions wrote the bare pid


def _tell_long_holds(held: list[_Held], long_hold: float, told: set[Path], log: Callable[[str], None]) -> None:
    """Name, once per lock file, the holder of a slot held past `long_hold` s: a stuck run, or another user's.
    The waiting run never takes the slot: the lock may be a live run's."""
    now = time.time()
    for h in held:
        if h.path not in told and now - h.since > long_hold:
            told.add(h.path)
            age = now - h.since
            took = f"{age / 3600:.1f} h" if age >= 3600 else f"{age:.0f} s"
            log(f"GPU slot lock {h.path} held for {took} by {h.holder or 'an unrecorded process'}: "
                "if that run is stuck, stop it (its lock goes with it)")


def _enough(devices: list[str], count: int) -> list[str]:
    if count > len(devices):
        raise ValueError(f"a run asks for {count} GPU(s) but this machine shows {len(devices)} "
                         f"({devices or 'none'}); lower the experiment's `gpus` or run where there are more")
    return devices


def _take(count: int, devices: list[str], slots: int, lock_dir: Path, held: list[_Held]) -> Lease | None:
    """One pass over the slots: `count` devices locked, or none (and the slots found held added to `held`)."""
    lease = Lease([])
    # All or nothing, refused lock files included: holding some while waiting for more could deadlock.
    with contextlib.ExitStack() as undo:
        undo.callback(lease.release)
        # Spread first: every device's first slot before any device's second, so runs that share
        # GPUs on purpose (slots > 1) still take an idle GPU while there is one.
        for slot in range(slots):
            for dev in devices:
                if dev in lease.devices:
                    continue
                f = _try_lock(lock_dir / f"gpu{dev}.slot{slot}.lock")
                if isinstance(f, _Held):
                    held.append(f)
                else:
                    lease.devices.append(dev)
                    lease._files.append(f)
                if len(lease.devices) == count:
                    undo.pop_all()
                    return lease
    return None


def acquire(count: int, *, devices: Sequence[str] | None = None, slots: int = 1, lock_dir: Path | None = None,
            timeout: float | None = None, poll: float = 2.0, log: Callable[[str], None] | None = None,
            long_hold: float = LONG_HOLD_S) -> Lease:
    """Lock `count` distinct devices (each with one of its `slots` free), waiting if needed;
    `log` hears once that the run waits, and for which devices, and once per slot held longer
    than `long_hold` seconds, by whom.

    Raises ValueError when the machine has fewer than `count` devices, LockError (a ValueError)
    when the lock folder or a lock file is unsafe, TimeoutError after `timeout` seconds without
    enough free ones.
    """
    devices = _enough(list(visible_devices() if devices is None else devices), count)
    lock_dir = _lock_folder(lock_dir)
    deadline = None if timeout is None else time.monotonic() + timeout
    waited = 0
    told: set[Path] = set()
    while True:
        held: list[_Held] = []
        lease = _take(count, devices, slots, lock_dir, held)
        if lease is not None:
            return lease
        if log is not None and waited == 0:
            log(f"waiting for {count} free GPU slot(s) among {devices}: other runs hold them (locks in {lock_dir})")
        if log is not None:
            _tell_long_holds(held, long_hold, told, log)
        waited += 1
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"no {count} free GPU slot(s) among {devices} within {timeout} s")
        time.sleep(poll)


def claim(count: int, *, slots: int = 1, timeout: float | None = None,
          log: Callable[[str], None] | None = None) -> Lease:
    """The devices for one run, locked and exported in CUDA_VISIBLE_DEVICES."""
    lease = acquire(count, slots=slots, timeout=timeout, log=log)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(lease.devices)
    return lease
