"""Augmentation throughput (images/s) of the on-device path of in-memory datasets (CIFAR-shaped).

Not a test. Run from the repository root:
    PYTHONPATH=src python benchmarks/augment_throughput.py [--device cuda] [--threads 1]

1. Device path (mimetic.train.augment), 32x32 uint8 batches of 512, as inputs.MemoryInputs uses it
   (each planned on the host, its plan copied, applied on the device): crop+flip, RandAugment
   rand-m9-mstd0.5-inc1, normalise+mixup, normalise+cutmix, and the whole MemoryInputs pipeline
   (crop 4, flip, RandAugment, mixup/cutmix), made in place and made ahead in a thread.
The ImageNet input path is measured by benchmarks/imagenet_input.py.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import time
from collections.abc import Callable

import torch

from mimetic.data import load_dataset
from mimetic.train.augment import BatchAugment, Draws, RandAugment, crop_flip, mix, plan_crop_flip, plan_mix
from mimetic.train.recipe import TrainConfig
from mimetic.train.inputs import MemoryInputs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(fn: Callable[[], object], images: int, device: torch.device, repeats: int) -> float:
    """Median images/s over `repeats` timed calls, after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return images / statistics.median(times)


def device_path(device: torch.device, batch: int, repeats: int) -> dict[str, float]:
    """Each augmentation as a run does it: planned on the host, one copy, applied on the device."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    augment = BatchAugment(device, (3, 32, 32), 10, torch.tensor([0.49, 0.48, 0.45]), torch.tensor([0.25, 0.24, 0.26]),
                           seed=0, crop_padding=4, flip=True, randaugment=RandAugment.parse("rand-m9-mstd0.5-inc1"))
    eye = torch.eye(10, device=device)

    def planned(plan, work):
        def run():
            d = Draws()
            plan(d)
            return work(d, d.to(device))
        return run

    whole = slice(None)
    results = {
        "crop (pad 4) + flip": planned(lambda d: plan_crop_flip(d, gen, batch, whole, 4, True),
                                       lambda d, t: crop_flip(x, 4, t)),
        "RandAugment rand-m9-mstd0.5-inc1": planned(lambda d: augment.randaugment.plan(d, gen, batch, whole, 32, 32),
                                                    lambda d, t: augment.randaugment.apply(x.clone(), d, t,
                                                                                           augment.fill)),
        "normalise + mixup (alpha 0.8)": planned(lambda d: plan_mix(d, gen, 32, 32, 0.8, 0.0),
                                                 lambda d, t: mix(augment.normalize(x), eye[y], d)),
        "normalise + cutmix (alpha 1.0)": planned(lambda d: plan_mix(d, gen, 32, 32, 0.0, 1.0),
                                                  lambda d, t: mix(augment.normalize(x), eye[y], d)),
    }
    results = {name: rate(fn, batch, device, repeats) for name, fn in results.items()}
    data = load_dataset("synthetic")  # 2048 CIFAR-shaped images: 4 batches of 512
    cfg = TrainConfig(dataset="synthetic", model="vit_tiny_patch2_32", batch_size=batch, crop_padding=4,
                      randaugment="rand-m9-mstd0.5-inc1", mixup=0.8, cutmix=1.0).validate()
    for ahead in (0, 2):
        batches = MemoryInputs(cfg, device, data=data, prefetch=ahead)
        results[f"MemoryInputs, prefetch {ahead}: crop+flip+RandAugment+mixup/cutmix"] = rate(
            lambda: [b for b in batches.epoch(0)], batches.steps * batches.batch_size, device, repeats)
    return results


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        model = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {torch.get_num_threads()} torch thread(s)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"machine: {machine(device)}; torch {torch.__version__}\n")
    print(f"| device path, {args.batch} x 3 x 32 x 32 uint8 | images/s |\n|---|---:|")
    for name, value in device_path(device, args.batch, args.repeats).items():
        print(f"| {name} | {value:,.0f} |")


if __name__ == "__main__":
    main()
