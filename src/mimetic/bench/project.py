"""The project's step as `mimetic bench` times it: what a run executes, built from the public
pieces of mimetic.train (the run's Inputs, build_model, build_optimizer, build_scheduler,
train_step), the input step's work counted on `meta`, and several runs packed on one device."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mimetic.bench._timing import peak_memory, reset_memory, resolve_device, summarize, sync, timed
from mimetic.bench.options import Options
from mimetic.data.core import STREAMED
from mimetic.bench.flops import set_fused_attention
from mimetic.train.models import build_model
from mimetic.train.launch import die_with_parent
from mimetic.train.recipe import TrainConfig


def _optimizer(cfg: TrainConfig, net: nn.Module, device: torch.device, fused: str) -> torch.optim.Optimizer:
    from mimetic.train.loop import build_optimizer

    # `auto` is exactly what a run gets (fused on CUDA)
    return build_optimizer(cfg, net, device, fused=None if fused == "auto" else fused == "on")


def _compile(model: nn.Module, mode: str, device: torch.device) -> nn.Module:
    if not _compiles(mode, device):
        return model
    return torch.compile(model, **({} if mode == "default" else {"mode": mode}))


def _compiles(mode: str, device: torch.device) -> bool:
    from mimetic.train.launch import compiler_missing

    return mode != "off" and device.type == "cuda" and compiler_missing() is None


def input_work(cfg: TrainConfig, data: Any) -> dict[str, Any]:
    """Copies from the host and device kernels of one in-memory input step (the second: the
    first makes the per-device constants), with the device faked as `meta` (mimetic.bench.flops), on
    images shaped as `data`'s (None: streamed, not counted)."""
    from mimetic.data import ImageData
    from mimetic.bench.flops import DeviceWork
    from mimetic.train.inputs import MemoryInputs

    if data is None:
        return {"skipped": "streamed dataset: its decoding cannot run on the meta device"}
    n, gen = 2 * cfg.batch_size, torch.Generator().manual_seed(0)
    x = torch.randint(256, (n, *data.train_x.shape[1:]), dtype=torch.uint8, generator=gen)
    fake = ImageData(data.name, x, torch.randint(data.num_classes, (n,), generator=gen), x[:8],
                     torch.zeros(8, dtype=torch.long), data.num_classes, data.flip)
    steps = MemoryInputs(cfg, torch.device("meta"), data=fake, prefetch=0).epoch(0)
    next(steps)
    with DeviceWork() as work:
        next(steps)
    return {"copies": work.copies, "kernels": work.kernels, "counted_on": "meta"}


def _forever(inputs: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    epoch = 0
    while True:
        yield from inputs.epoch(epoch)
        epoch += 1


def load_inputs(cfg: TrainConfig, opts: Options, device: torch.device) -> tuple[Any, Any]:
    """(the run's Inputs, the in-memory ImageData behind them, or None when streamed)."""
    from mimetic.data import load_dataset
    from mimetic.data.builtin import load_synthetic
    from mimetic.train.inputs import MemoryInputs, make_inputs

    if cfg.dataset in STREAMED:
        return make_inputs(cfg, device), None
    data = (load_synthetic(n_train=opts.images, n_test=opts.test_images) if cfg.dataset == "synthetic"
            else load_dataset(cfg.dataset, cfg.data_root))
    return MemoryInputs(cfg, device, data=data), data


def project(cfg: TrainConfig, opts: Options, device: torch.device, inputs: Any, flops: int, peak: float,
            ready: Callable[[], None] | None = None) -> dict[str, Any]:
    """The project's full step (inputs + train_step + scheduler), then train_step alone on one
    device-resident batch, then one evaluation pass. A packing worker (`ready`: its barrier,
    called when warm) times the full step only."""
    from mimetic.train.loop import build_scheduler, evaluate, train_step

    net = build_model(cfg, num_classes=inputs.num_classes, in_chans=inputs.channels).to(device)
    set_fused_attention(net, opts.sdpa)
    model = _compile(net, opts.compile, device)
    optimizer = _optimizer(cfg, net, device, opts.fused)
    scheduler = build_scheduler(cfg, optimizer, inputs.steps)
    graphs = opts.compile == "reduce-overhead" and device.type == "cuda"
    batches, updates = _forever(inputs), 0

    def update(x: torch.Tensor, y: torch.Tensor) -> int:
        nonlocal updates
        if graphs:  # one training iteration per CUDA-graph step (torch.compiler docs)
            torch.compiler.cudagraph_mark_step_begin()
        train_step(model, optimizer, x, y, cfg)
        updates += 1
        scheduler.step_update(num_updates=updates)
        return len(x)

    model.train()
    reset_memory(device)
    full = summarize(timed(lambda: update(*next(batches)), device, opts, ready or (lambda: None)), flops, peak)
    memory, kind = peak_memory(device)
    full.update(peak_memory_gib=memory, memory=kind)
    result: dict[str, Any] = {"project": full}
    if ready is not None:
        return result
    x, y = next(batches)
    alone = summarize(timed(lambda: update(x, y), device, opts), flops, peak)
    alone["input_share"] = 1 - full["images_per_s"] / alone["images_per_s"]
    result["model_step"] = alone
    if opts.eval:
        test_images = 0

        def counted() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            nonlocal test_images
            for xb, yb in inputs.test():
                test_images += len(yb)
                yield xb, yb

        evaluate(net, counted(), cfg.amp)  # warm-up (kernel choice, allocator)
        test_images = 0
        sync(device)
        t0 = time.perf_counter()
        evaluate(net, counted(), cfg.amp)
        seconds = time.perf_counter() - t0
        epoch_train = inputs.steps * inputs.batch_size / full["images_per_s"]
        result["evaluation"] = {"seconds": seconds, "images": test_images, "images_per_s": test_images / seconds,
                                "epoch_train_seconds": epoch_train,
                                "fraction_of_epoch": seconds / (seconds + epoch_train)}
    else:
        result["evaluation"] = {"skipped": "--eval off"}
    return result


def pack(opts: Options, runs: int, single: float) -> dict[str, Any]:
    """Aggregate images/s of `runs` processes each training the project's step on this device at
    once. Each worker warms up, waits for the others, then times; the aggregate is all timed
    images over the span from the first window's start to the last one's end (an overlap that is
    not perfect lowers it, never raises it)."""
    with tempfile.TemporaryDirectory(prefix="mimetic-pack-") as tmp:
        from mimetic.train.inputs import available_cpus

        # The workers share this process's cores: torch's default would give each all of them.
        threads = opts.threads or max(1, available_cpus() // runs)
        worker = dataclasses.replace(opts, reference=False, eval=False, pack=0, barrier=tmp, barrier_count=runs,
                                     threads=threads)
        argv = [sys.executable, "-m", "mimetic.bench", "worker", json.dumps(dataclasses.asdict(worker))]
        procs = [subprocess.Popen([*argv, str(Path(tmp) / f"{i}.json")], preexec_fn=die_with_parent)
                 for i in range(runs)]
        # One failed worker would leave the others waiting at the barrier: stop them all.
        while any(p.poll() is None for p in procs):
            if any(p.poll() for p in procs):
                for p in procs:
                    if p.poll() is None:
                        p.terminate()
            time.sleep(0.1)
        codes = [p.wait() for p in procs]
        if any(codes):
            raise RuntimeError(f"packing workers exited with {codes} (their errors are above)")
        results = [json.loads((Path(tmp) / f"{i}.json").read_text()) for i in range(runs)]
    start, end = min(r["window"][0] for r in results), max(r["window"][1] for r in results)
    aggregate = sum(r["images"] for r in results) / (end - start)
    return {"runs": runs, "single_images_per_s": single, "aggregate_images_per_s": aggregate,
            "speedup": aggregate / single, "per_run": [r["images_per_s"] for r in results]}


def pack_worker(opts: Options, out: Path) -> None:
    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = resolve_device(opts.device)
    cfg = opts.config()
    inputs, _ = load_inputs(cfg, opts, device)
    me = Path(opts.barrier) / f"ready-{os.getpid()}"

    def ready() -> None:
        me.touch()
        deadline = time.monotonic() + 600
        while len(list(Path(opts.barrier).glob("ready-*"))) < opts.barrier_count:
            if time.monotonic() > deadline:
                raise TimeoutError("packing workers did not all warm up within 10 minutes")
            time.sleep(0.01)
        window.append(time.time())

    window: list[float] = []
    result = project(cfg, opts, device, inputs, 1, 1.0, ready)["project"]
    window.append(time.time())
    images = opts.repeats * opts.steps * inputs.batch_size
    out.write_text(json.dumps({"images_per_s": result["images_per_s"], "images": images, "window": window}))
