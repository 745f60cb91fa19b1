"""Pre-emption: a run asked to stop (SLURM's SIGTERM at pre-emption or before the time limit,
`--signal`; or a user's `kill`) finishes the step in progress, writes its checkpoint and exits with
EXIT_CODE. Snakemake's `retries` and SLURM's requeue (the profiles set both) start it again,
and it resumes from that step as if it had never stopped (docs/training.md, "Pre-emption").
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from mimetic.train.distributed import Dist

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
EXIT_CODE = 75  # sysexits.h's EX_TEMPFAIL, "try again later": any non-zero status is a failure to retry


class Preempted(RuntimeError):
    """The run stopped on request, its checkpoint written: the same command resumes it."""

    exit_code = EXIT_CODE


class StopRequest:
    """Whether this run was asked to stop, and, in a data-parallel run, the step all ranks stop at."""

    def __init__(self, dist: Dist = Dist()):
        self.dist, self.signum, self.agreed = dist, None, False
        self._group = self._pending = self._flag = None

    def handle(self, signum: int, frame: object = None) -> None:
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "a stop request"

    def after_step(self) -> bool:
        """Whether every rank stops after the step it just took; called once per step on every rank.

        Ranks receive a signal at different moments, so they vote: each step starts an all-reduce
        of the flags (on a gloo group of the CPU: no device sync) and reads the previous step's,
        so all agree on the same step without waiting on each other.
        """
        if self.dist.world == 1 or self.agreed:
            self.agreed = self.agreed or self.signum is not None
            return self.agreed
        if self._pending is not None:
            self._pending.wait()
            self.agreed = bool(self._flag.item())
        if not self.agreed:
            self._vote(async_op=True)
        return self.agreed

    def now(self) -> bool:
        """Whether every rank stops here (the end of an epoch): agreed at once, waiting for all ranks."""
        if self.dist.world == 1 or self.agreed:
            return self.after_step()
        self._drain()
        if not self.agreed:  # the same on every rank: the drained vote was theirs too
            self._vote(async_op=False)
            self.agreed, self._pending = bool(self._flag.item()), None
        return self.agreed

    def _vote(self, async_op: bool) -> None:
        if self._group is None:
            self._group = torch.distributed.new_group(backend="gloo")
        self._flag = torch.tensor([int(self.signum is not None)], dtype=torch.int32)
        self._pending = torch.distributed.all_reduce(self._flag, group=self._group, async_op=async_op)

    def _drain(self) -> None:
        if self._pending is not None:
            self._pending.wait()
            self.agreed = self.agreed or bool(self._flag.item())
            self._pending = None


@contextlib.contextmanager
def on_signals(dist: Dist = Dist()) -> Iterator[StopRequest]:
    """SIGTERM and SIGUSR1 become a StopRequest while the block runs (the previous handlers after).

    Installed before the input workers start, so forked DataLoader workers inherit it and keep
    serving batches until the step in progress is done, instead of dying of the signal.
    """
    stop = StopRequest(dist)
    main = threading.current_thread() is threading.main_thread()  # handlers can only be set there
    previous = {s: signal.signal(s, stop.handle) for s in SIGNALS} if main else {}
    if main:  # a launcher may have blocked or ignored them for itself (see forward_to_children)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    try:
        yield stop
        stop._drain()  # every rank started the last vote; after an error the others may never finish it
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def stopped(stop: StopRequest, where: str, checkpoint: Path | None) -> Preempted:
    """The one line a stopped run ends with."""
    saved = f"checkpoint written to {checkpoint}" if checkpoint else "no --checkpoint given, nothing was kept"
    return Preempted(f"stopped by {stop.name} {where}; {saved}; the same command resumes it (exit status "
                     f"{EXIT_CODE}: retry)")


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux's /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # it ended meanwhile
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # after "pid (comm) state": the parent
                found.append(int(entry.name))
    return found


def forward_to_children(stop: StopRequest, launcher_pid: int) -> None:
    """A launcher's handler: pass a stop request on to the workers under `launcher_pid` (torchrun's
    children), not to torchrun itself. Under SLURM every process of the job gets the signal, torchrun
    too, and a second signal to torchrun would cut its own wait for the workers short."""
    def handle(signum: int, frame: object = None) -> None:
        stop.handle(signum)
        for pid in children(launcher_pid) or [launcher_pid]:  # no workers yet: torchrun stops them
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    for s in SIGNALS:
        signal.signal(s, handle)
