"""Batches made ahead: the next batch is prepared while the current step computes.

`prefetch` runs a batch iterator in a thread, `depth` batches ahead of the training loop. On
CUDA the thread works on a stream of its own, so its copies and kernels overlap the model's,
and hands each batch over with stream semantics: the compute stream waits for the batch's
event (on the device, not the host), and every tensor of the batch is recorded on the compute
stream, so the caching allocator never gives its memory to the side stream while the model
still reads it. On the CPU the same thread runs without streams. Either way the batches, and
their order, are exactly those of the iterator itself (depth 0 runs it inline): every random
draw comes from explicit generators, never from the global RNG that the model's dropout uses.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

T = TypeVar("T")
DEPTH = 2  # batches ahead: one being handed over, one ready, while the thread makes the next

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def _tensors(batch: Any) -> Iterator[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, (tuple, list)):
        for item in batch:
            yield from _tensors(item)


def prefetch(make: Callable[[], Iterator[T]], device: torch.device, depth: int = DEPTH) -> Iterator[T]:
    """The batches of `make()`, made in a thread up to `depth` ahead (0: in this thread).
    An error in the thread is raised here, at the batch it happened at."""
    if depth < 1:
        yield from make()
        return
    cuda = device.type == "cuda"
    stream = torch.cuda.Stream(device) if cuda else None
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            # One intra-op thread (OpenMP's count is per thread): the host side of a batch is small
            # ops, and on the CPU the model's step keeps the cores it was given.
            torch.set_num_threads(1)
            if cuda:
                torch.cuda.set_device(device)  # the current device is per thread too
            with torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
                for batch in make():
                    event = None
                    if cuda:
                        event = torch.cuda.Event()
                        event.record(stream)
                    if not put((batch, event)):
                        return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            put((_Failure(e), None))
            return
        put((_DONE, None))

    thread = threading.Thread(target=work, name="mimetic-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            batch, event = ready.get()
            if batch is _DONE:
                return
            if isinstance(batch, _Failure):
                raise batch.error
            if event is not None:
                current = torch.cuda.current_stream(device)
                current.wait_event(event)
                for t in _tensors(batch):
                    t.record_stream(current)
            yield batch
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                ready.get_nowait()
        thread.join(timeout=10)
