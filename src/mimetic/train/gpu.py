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
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def default_lock_dir() -> Path:
    # Node-local on purpose: a lock means "this machine's GPU k", so it must not be shared
    # across cluster nodes through a network file system.
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


def _try_lock(path: Path) -> IO | None:
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")  # for people who look: who holds this slot
    f.flush()
    return f


def _enough(devices: list[str], count: int) -> list[str]:
    if count > len(devices):
        raise ValueError(f"a run asks for {count} GPU(s) but this machine shows {len(devices)} "
                         f"({devices or 'none'}); lower the experiment's `gpus` or run where there are more")
    return devices


def acquire(count: int, *, devices: Sequence[str] | None = None, slots: int = 1, lock_dir: Path | None = None,
            timeout: float | None = None, poll: float = 2.0, log: Callable[[str], None] | None = None) -> Lease:
    """Lock `count` distinct devices (each with one of its `slots` free), waiting if needed;
    `log` hears once that the run waits, and for which devices.

    Raises ValueError when the machine has fewer than `count` devices, TimeoutError after
    `timeout` seconds without enough free ones.
    """
    devices = _enough(list(visible_devices() if devices is None else devices), count)
    lock_dir = lock_dir or default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    waited = 0
    while True:
        lease = Lease([])
        # Spread first: every device's first slot before any device's second, so runs that share
        # GPUs on purpose (slots > 1) still take an idle GPU while there is one.
        for slot in range(slots):
            for dev in devices:
                if dev in lease.devices:
                    continue
                f = _try_lock(lock_dir / f"gpu{dev}.slot{slot}.lock")
                if f is not None:
                    lease.devices.append(dev)
                    lease._files.append(f)
                if len(lease.devices) == count:
                    return lease
        lease.release()  # all or nothing: holding some while waiting for more could deadlock
        if log is not None and waited == 0:
            log(f"waiting for {count} free GPU slot(s) among {devices}: other runs hold them (locks in {lock_dir})")
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
