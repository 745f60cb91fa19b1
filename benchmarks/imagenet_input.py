"""ImageNet input path throughput (images/s): what `mimetic train` feeds the model, by decode path.

Not a test. Run from the repository root:
    PYTHONPATH=src python benchmarks/imagenet_input.py                      # CPU: decode cpu and device
    PYTHONPATH=src python benchmarks/imagenet_input.py --device cuda --workers 4 8 16

It writes ImageNet-sized JPEGs (500x375, quality 90, smooth photo-like content) in ImageFolder
layout to a temporary folder, indexes them with the data stage, and times whole epochs of
`mimetic.train.stream.StreamInputs` (the training input of a run: per-image random-resized crop + flip,
then on the device RandAugment, normalisation, erasing, mixup/cutmix) and its evaluation pass,
for each decode path (`cpu`: PIL in DataLoader workers; `device`: workers read the bytes, the
batch is decoded by torchvision on the training device) and worker count. The first epoch (worker
start-up) is not timed; the median of the others is reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from augment_throughput import machine  # this folder's scripts share their machine line

from mimetic.data.imagenet import index
from mimetic.train.inputs import available_cpus
from mimetic.train.stream import StreamInputs
from mimetic.train.models import image_size
from mimetic.train.recipe import TrainConfig

RECIPES = {
    "ResNet-style (crop + flip)": {},
    "DeiT-style (+ RandAugment m9, erasing 0.25, mixup/cutmix)": dict(
        randaugment="rand-m9-mstd0.5-inc1", random_erasing=0.25, mixup=0.8, cutmix=1.0, interpolation="bicubic"),
}


def _write(args: tuple[Path, int, int]) -> None:
    root, i, classes = args
    rng = np.random.default_rng(i)
    small = torch.from_numpy(rng.integers(0, 256, (1, 3, 24, 32)).astype(np.float32))
    big = F.interpolate(small, size=(375, 500), mode="bicubic").clamp(0, 255).to(torch.uint8)[0]
    Image.fromarray(big.permute(1, 2, 0).numpy()).save(root / f"n{i % classes:08d}" / f"{i}.JPEG", quality=90)


def jpeg_folder(root: Path, images: int, val_images: int | None = None, classes: int = 4) -> Path:
    """ImageNet-sized JPEGs in ImageFolder layout, written by all cores (kept if already there)."""
    val_images = images if val_images is None else val_images
    jobs = []
    for split, n in (("train", images), ("val", val_images)):
        for c in range(classes):
            (root / split / f"n{c:08d}").mkdir(parents=True, exist_ok=True)
        jobs += [(root / split, i, classes) for i in range(n) if not (root / split / f"n{i % classes:08d}" /
                                                                        f"{i}.JPEG").exists()]
    with ProcessPoolExecutor(available_cpus()) as pool:
        list(pool.map(_write, jobs, chunksize=64))
    return root


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(inputs: StreamInputs, device: torch.device, epochs: int) -> tuple[float, float]:
    """(median training images/s, median evaluation images/s) over epochs 2.."""
    train, evals = [], []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        n = sum(len(y) for _, y in inputs.epoch(epoch))
        sync(device)
        train.append(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        n = sum(len(y) for _, y in inputs.test())
        sync(device)
        evals.append(n / (time.perf_counter() - t0))
    return statistics.median(train[1:]), statistics.median(evals[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=256, help="training JPEGs")
    p.add_argument("--val-images", type=int, default=None, help="validation JPEGs (default: as many)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--decode", nargs="+", default=["cpu", "device"])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model", default="vit_tiny_patch16_224", help="its image size is the crop size")
    p.add_argument("--keep", default=None, help="write the JPEGs (DIR/imagenet) and their index (DIR/index) here "
                                                "and keep them, e.g. for `mimetic bench --dataset imagenet`; "
                                                "JPEGs already there are used as they are")
    p.add_argument("--prepare-only", action="store_true", help="write and index the JPEGs (--keep), time nothing")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    size = image_size(args.model)
    print(f"machine: {machine(device)}; torch {torch.__version__}; {args.images} JPEGs of 500x375, {size} px crops, "
          f"batch {args.batch}\n")
    print("| recipe | decode | workers | train images/s | eval images/s |\n|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or scratch
        root = jpeg_folder(Path(tmp) / "imagenet", args.images, args.val_images)
        index(root, Path(tmp) / "index", workers=available_cpus(), log=lambda s: None)
        if args.prepare_only:
            return
        for name, keys in RECIPES.items():
            for decode in args.decode:
                for workers in args.workers:
                    cfg = TrainConfig(dataset="imagenet", model=args.model, data_root=f"{tmp}/index",
                                      batch_size=args.batch, eval_batch_size=args.batch, workers=workers,
                                      decode=decode, **keys).validate()
                    train, evals = measure(StreamInputs(cfg, device), device, args.epochs)
                    print(f"| {name} | {decode} | {workers} | {train:,.0f} | {evals:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
