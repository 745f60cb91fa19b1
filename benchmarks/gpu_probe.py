"""What only a GPU can show about the training step, for benchmarks/gpu_check.sh. Not a test.

    PYTHONPATH=src python benchmarks/gpu_probe.py syncs --data-root DIR/index --json out.json
    PYTHONPATH=src python benchmarks/gpu_probe.py decode-order --json out.json
    PYTHONPATH=src python benchmarks/gpu_probe.py idle --data-root DIR/index --json out.json

- syncs: host synchronizations (torch.cuda.set_sync_debug_mode("warn")) in three steps of a CIFAR
  run (ViT-Tiny patch 2, RandAugment m9, crop 4, mixup/cutmix) and of an ImageNet run (ViT-Tiny/16,
  JPEGs decoded on the GPU), per thread: the training loop's (target: none) and the prefetch
  thread's (ImageNet: one per batch, the deliberate wait for its own stream before decoding).
- decode-order: the hazard of torchvision's CUDA decoder, in the spirit of torchcodec PR #1634: a
  long kernel is queued to read a buffer, the buffer is freed (its kernels still queued), then a
  batch is decoded. Called plainly, the decoder may be handed the freed block and overwrite it
  before the kernel reads it (a wrong sum). Called as the project's prefetch thread does
  (inputs: stream.to_images on the prefetch stream), it may not.
- idle: the GPU's idle fraction over five profiled training steps (CIFAR and ImageNet): the
  share of the steps' wall time in which no kernel ran.
On a machine without CUDA each writes {"skipped": why}, after running the same steps' code once.
"""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from mimetic.train import stream
from mimetic.train.augment import Draws
from mimetic.train.inputs import make_inputs
from mimetic.train.prefetch import prefetch
from mimetic.train.models import build_model
from mimetic.train.recipe import TrainConfig
from mimetic.train.loop import build_optimizer, build_scheduler, train_step

CIFAR = dict(dataset="synthetic", model="vit_tiny_patch2_32", batch_size=512, crop_padding=4,
             randaugment="rand-m9-mstd0.5-inc1", mixup=0.8, cutmix=1.0)
IMAGENET = dict(dataset="imagenet", model="vit_tiny_patch16_224", batch_size=256, decode="device")
TINY = dict(model="vit_digits")  # --cpu: the same code at toy sizes


def recipes(args: argparse.Namespace) -> dict[str, TrainConfig]:
    tiny = TINY if args.device == "cpu" else {}
    out = {"cifar": {**CIFAR, **tiny, "batch_size": 64 if tiny else 512}}
    if tiny:
        out["cifar"].update(dataset="digits", crop_padding=1)
    if args.data_root:
        out["imagenet"] = {**IMAGENET, **tiny, "data_root": args.data_root, "batch_size": 16 if tiny else 256}
    return {name: TrainConfig(**keys).validate() for name, keys in out.items()}


def setup(cfg: TrainConfig, device: torch.device):
    inputs = make_inputs(cfg, device)
    net = build_model(cfg, num_classes=inputs.num_classes, in_chans=inputs.channels).to(device)
    optimizer = build_optimizer(cfg, net, device)
    scheduler = build_scheduler(cfg, optimizer, inputs.steps)
    net.train()

    def batches():
        epoch = 0
        while True:
            yield from inputs.epoch(epoch)
            epoch += 1

    it = batches()
    updates = [0]

    def step() -> None:
        x, y = next(it)
        train_step(net, optimizer, x, y, cfg)
        updates[0] += 1
        scheduler.step_update(num_updates=updates[0])

    return step


def syncs(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, cfg in recipes(args).items():
        step = setup(cfg, device)
        for _ in range(3):  # warm-up: first-use constants, the allocator, cuDNN/cuBLAS choices
            step()
        if device.type != "cuda":
            step()
            out[name] = {"skipped": "set_sync_debug_mode is CUDA's"}
            continue
        torch.cuda.synchronize(device)
        seen: dict[str, int] = {}
        lock = threading.Lock()

        def record(message, category, filename, lineno, file=None, line=None):
            if "synchroniz" in str(message):
                with lock:
                    thread = threading.current_thread().name
                    seen[thread] = seen.get(thread, 0) + 1

        with warnings.catch_warnings():  # restores the filters and showwarning on exit
            warnings.simplefilter("always")
            warnings.showwarning = record
            torch.cuda.set_sync_debug_mode("warn")  # process-wide: the prefetch thread's syncs count too
            try:
                for _ in range(3):
                    step()
            finally:
                torch.cuda.set_sync_debug_mode(0)
        torch.cuda.synchronize(device)
        out[name] = {"steps": 3, "training_loop": seen.pop("MainThread", 0), "prefetch_thread":
                     seen.pop("mimetic-prefetch", 0), "other_threads": seen, "target_training_loop": 0}
    return out


def _jpeg(height: int, width: int) -> torch.Tensor:
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    small = torch.rand(1, 3, 12, 16, generator=gen) * 255
    img = torch.nn.functional.interpolate(small, size=(height, width), mode="bilinear")[0].byte()
    buf = io.BytesIO()
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=90)
    return torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)


def _packed(data: torch.Tensor, height: int, width: int, size: int) -> stream.Packed:
    """One file as the workers send it: resampled whole to size x size."""
    plan = (0, 0, len(data), height, width, 0, 0, height, width, size, size, 0, 0, 0)
    return stream.Packed(torch.zeros(1, dtype=torch.long), data, torch.tensor([plan]),
                           torch.empty(0, 3, 0, 0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), ["probe"])


def decode_order(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from torchvision.io import decode_jpeg

    height, width, size = 600, 800, 224
    data = _jpeg(height, width)
    if device.type != "cuda":
        d = Draws()
        batch = _packed(data, height, width, size)
        stream.plan_batch(d, batch)
        stream.to_images(batch, d, d.to(device), device, size=size)
        return {"skipped": "the hazard is CUDA's: stream order"}
    fill, n = 7, 3 * height * width

    def trial(decode) -> dict[str, Any]:
        """Queue a slow read of a buffer, free the buffer, decode: did the read see the buffer?"""
        buffer = torch.full((3, height, width), fill, dtype=torch.uint8, device=device)
        ptr = buffer.data_ptr()
        torch.cuda.synchronize(device)
        torch.cuda._sleep(2_000_000_000)  # about a second of spinning on this stream
        total = buffer.sum(dtype=torch.int64)  # queued behind the sleep: reads the buffer later
        del buffer  # back to the allocator while its kernels are still queued
        out = decode()
        torch.cuda.synchronize(device)
        return {"reused_freed_block": out.data_ptr() == ptr, "sum_correct": int(total) == fill * n}

    def plain():
        return decode_jpeg(data, device=device)

    def as_the_project_decodes():
        # what the prefetch thread does: the batch made on its stream by stream.to_images
        def make():
            d = Draws()
            batch = _packed(data, height, width, size)
            stream.plan_batch(d, batch)
            yield stream.to_images(batch, d, d.to(device), device, size=size)

        return next(prefetch(make, device))

    def on_the_prefetch_stream_after_its_sync():
        # the freed buffer on the decoding stream itself: the sync before decoding covers it
        side = torch.cuda.Stream(device)
        with torch.cuda.stream(side):
            return trial(lambda: (side.synchronize(), decode_jpeg(data, device=device))[1])

    return {"plain_call": trial(plain), "project_path": trial(as_the_project_decodes),
            "same_stream_after_sync": on_the_prefetch_stream_after_its_sync(),
            "note": "plain_call may come out right by chance (the allocator did not hand over the freed block); "
                    "the project's paths must always be right"}


def idle(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    out: dict[str, Any] = {}
    for name, cfg in recipes(args).items():
        step = setup(cfg, device)
        for _ in range(5):
            step()
        if device.type != "cuda":
            out[name] = {"skipped": "no GPU to be idle"}
            continue
        torch.cuda.synchronize(device)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            t0 = time.perf_counter()
            for _ in range(5):
                step()
            torch.cuda.synchronize(device)
            wall = time.perf_counter() - t0
        kernels = sorted((e.time_range.start, e.time_range.end) for e in prof.events()
                         if e.device_type == torch.autograd.DeviceType.CUDA)
        busy, end = 0.0, float("-inf")
        for a, b in kernels:  # the union of the kernels' intervals, microseconds
            if b > end:
                busy += b - max(a, end)
                end = b
        span = (kernels[-1][1] - kernels[0][0]) if kernels else 0.0
        out[name] = {"steps": 5, "wall_s": wall, "kernel_time_s": busy / 1e6, "kernels": len(kernels),
                     "idle_fraction_of_wall": 1 - busy / 1e6 / wall,
                     "idle_fraction_of_kernel_span": 1 - busy / span if span else None}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("probe", choices=("syncs", "decode-order", "idle"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data-root", default=None, help="an indexed ImageNet-layout folder (its index/ folder)")
    p.add_argument("--json", required=True)
    args = p.parse_args()
    device = torch.device(args.device)
    result = {"syncs": syncs, "decode-order": decode_order, "idle": idle}[args.probe](args, device)
    result["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
