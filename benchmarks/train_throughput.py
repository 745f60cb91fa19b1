"""Training throughput (images/s) and peak memory of one CIFAR-shaped run, with and without
torch.compile. Not a test. Run from the repository root:

    PYTHONPATH=src python benchmarks/train_throughput.py --device cuda            # on a GPU
    PYTHONPATH=src python benchmarks/train_throughput.py --device cpu --model vit_tiny_patch4_32 \
        --images 1024 --batch-size 256 --epochs 2 --compile off

It runs the real training step (mimetic.train: device-resident data, crop + flip +
RandAugment, bf16 autocast on CUDA, fused AdamW on CUDA, clipping) on synthetic 32x32 data and
reports the median images/s of the epochs after the first (which pays for compilation and
warm-up), and the peak memory.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler

from mimetic.data.builtin import load_synthetic
from mimetic.recipe import TrainConfig, build_model
from mimetic.train import Batches, _train_epoch


def measure(cfg: TrainConfig, device: torch.device, images: int, epochs: int) -> tuple[float, float]:
    """(median images/s over epochs 2.., peak memory in GiB)."""
    data = load_synthetic(n_train=images, n_test=64)
    model = build_model(cfg, num_classes=data.num_classes, in_chans=data.channels).to(device)
    net = torch.compile(model) if cfg.compile else model
    batches = Batches(data, cfg, device)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.opt_eps,
                                    **({"fused": True} if device.type == "cuda" else {}))
    scheduler = CosineLRScheduler(optimizer, t_initial=epochs * batches.steps, t_in_epochs=False)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rates = []
    for epoch in range(epochs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        losses, _, _ = _train_epoch(net, batches, epoch, optimizer, scheduler, cfg)
        losses.sum().item()  # waits for the device
        rates.append(batches.steps * batches.batch_size / (time.perf_counter() - t0))
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return statistics.median(rates[1:] or rates), peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", default="vit_tiny_patch2_32")
    p.add_argument("--images", type=int, default=10_240, help="synthetic training images per epoch")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--compile", choices=["off", "on", "both"], default="both")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {name}, torch {torch.__version__}, threads {torch.get_num_threads()}, model {args.model}, "
          f"batch {args.batch_size}, {args.images} images/epoch, {args.epochs} epochs")
    for compiled in {"off": [False], "on": [True], "both": [False, True]}[args.compile]:
        cfg = TrainConfig(dataset="synthetic", model=args.model, batch_size=args.batch_size,
                          randaugment="rand-m9-mstd0.5-inc1", compile=compiled).validate()
        rate, peak = measure(cfg, device, args.images, args.epochs)
        print(f"compile={'on ' if compiled else 'off'}  {rate:10.0f} images/s  peak memory {peak:.2f} GiB")


if __name__ == "__main__":
    main()
