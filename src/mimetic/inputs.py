"""What a run's model sees: the augmented, normalized batches of each epoch, and the test set.

Two sources, one interface (`Inputs`): datasets held in memory on the training device
(`MemoryInputs`: CIFAR, SVHN, Tiny-ImageNet, digits) and ImageNet streamed from its indexed
folder (`StreamInputs`). Every random draw is a function of (seed, epoch, step) or (seed, epoch,
image), never of the model's RNG, so two arms at one seed see the same images in the same order
with the same augmentation, and a resumed run sees what it would have seen uninterrupted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from mimetic.data import ImageData, imagenet, load_dataset
from mimetic.data.augment import RandAugment, generator, mix, random_crop, random_erasing, random_flip
from mimetic.data.core import DATA_DIR, STREAMED, DatasetUnavailable
from mimetic.distributed import Dist
from mimetic.models import MODELS
from mimetic.recipe import TrainConfig

Batch = tuple[Tensor, Tensor]


class Inputs(Protocol):
    steps: int  # optimizer steps per epoch (the last partial batch is dropped)
    batch_size: int  # the global batch, all ranks together
    num_classes: int
    channels: int

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """This rank's share of each global batch of `epoch` from step `start` on."""

    def test(self) -> Iterator[Batch]:
        """This rank's share of the test set, normalized, in batches of cfg.eval_batch_size."""


def _after_normalize(x: Tensor, y: Tensor, cfg: TrainConfig, num_classes: int, gen: torch.Generator) -> Batch:
    """The batch-level augmentations of normalized images: random erasing, then mixup/cutmix."""
    if cfg.random_erasing > 0:
        x = random_erasing(x, cfg.random_erasing, gen)
    if cfg.mixup > 0 or cfg.cutmix > 0:
        x, y = mix(x, y, num_classes, cfg.mixup, cfg.cutmix, gen)
    return x, y


class MemoryInputs:
    """A dataset on the device, served in shuffled, augmented, normalized batches: crop, flip,
    RandAugment on uint8, then normalisation, random erasing and mixup/cutmix.

    Every rank draws the same global batch with the same generator and keeps its shard, so a
    data-parallel run sees exactly the inputs of a single-process run. Epochs here take seconds
    to minutes: a run resumes at epoch boundaries (`start` must be 0).
    """

    def __init__(self, cfg: TrainConfig, device: torch.device, dist: Dist = Dist(), data: ImageData | None = None):
        """data: the dataset (default: load cfg.dataset); benchmarks pass their own."""
        data = data if data is not None else load_dataset(cfg.dataset, cfg.data_root)
        if MODELS[cfg.model]["img_size"] != data.image_size:
            raise ValueError(f"model={cfg.model!r} takes {MODELS[cfg.model]['img_size']}px images but "
                             f"dataset={cfg.dataset!r} has {data.image_size}px; pick a matching model")
        self.x, self.y = data.train_x.to(device), data.train_y.to(device)
        self.test_x, self.test_y = data.test_x.to(device), data.test_y.to(device)
        mean, std = data.stats()
        self.mean, self.std = mean.to(device)[:, None, None], std.to(device)[:, None, None]
        self.cfg, self.dist = cfg, dist
        self.flip = cfg.flip == "yes" or (cfg.flip == "auto" and data.flip)
        self.batch_size = min(cfg.batch_size, len(self.x))
        self.steps = len(self.x) // self.batch_size
        self.randaugment = RandAugment.parse(cfg.randaugment) if cfg.randaugment else None
        self.fill = (mean * 255).round()  # RandAugment's fill colour, as timm: the dataset mean
        self.num_classes, self.channels = data.num_classes, data.channels

    def normalize(self, x: Tensor) -> Tensor:
        return (x.float() / 255 - self.mean) / self.std

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        if start:
            raise ValueError(f"{self.cfg.dataset} is held in memory and resumes at epoch boundaries, not step {start}")
        # One generator per (seed, epoch): resuming at an epoch needs no saved data RNG.
        gen = generator(self.cfg.seed, epoch)
        perm = torch.randperm(len(self.x), generator=gen).to(self.x.device)
        for step in range(self.steps):
            idx = perm[step * self.batch_size : (step + 1) * self.batch_size]
            x = random_crop(self.x[idx], self.cfg.crop_padding, gen)
            if self.flip:
                x = random_flip(x, gen)
            if self.randaugment:
                x = self.randaugment(x, gen, self.fill)
            x, y = _after_normalize(self.normalize(x), self.y[idx], self.cfg, self.num_classes, gen)
            mine = self.dist.shard(len(idx))
            yield x[mine], y[mine]

    def test(self) -> Iterator[Batch]:
        batch_size = self.cfg.eval_batch_size
        mine = self.dist.shard(len(self.test_x))
        x, y = self.test_x[mine], self.test_y[mine]
        for i in range(0, len(x), batch_size):
            yield self.normalize(x[i : i + batch_size]), y[i : i + batch_size]


def available_cpus() -> int:
    """The CPUs this process may use (SLURM's cpus-per-task, taskset), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    """DataLoader workers per training process: the available CPUs shared among the node's
    ranks, one kept for the training loop."""
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, available_cpus() // ranks - 1)


def resolve_decode(decode: str, device: torch.device) -> str:
    """`auto` decodes JPEGs on the training device when it is a GPU, else in CPU workers."""
    return ("device" if device.type == "cuda" else "cpu") if decode == "auto" else decode


class StreamInputs:
    """ImageNet read from its index (`mimetic prepare imagenet`) by DataLoader workers.

    Per image (mimetic.data.imagenet): random-resized crop (scale 0.08-1, the crop box drawn from
    (seed, epoch, image)) and flip, decoded either in the workers with PIL (`decode: cpu`) or on
    the training device with nvJPEG through torchvision (`decode: device`; the workers only read
    the file). Per batch, on the device: RandAugment, normalization with the ImageNet mean and
    std, random erasing, mixup/cutmix, drawn from (seed, epoch, step, rank).

    Under torchrun each rank loads only its share of every global batch, so batch-level draws
    (RandAugment, erasing, mixup partners) are per rank; a data-parallel run sees the same
    images and crops as a single process, not the same batch-level augmentation.
    """

    def __init__(self, cfg: TrainConfig, device: torch.device, dist: Dist = Dist()):
        folder = Path(cfg.data_root) if cfg.data_root else DATA_DIR / cfg.dataset
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            raise DatasetUnavailable(f"{cfg.dataset}: not indexed: {meta_path} does not exist. Run the data stage "
                                     f"(`mimetic prepare imagenet --root <your copy>`, or the workflow with the "
                                     f"config key {imagenet.ROOT_KEY} set)")
        meta = json.loads(meta_path.read_text())
        self.cfg, self.dist, self.device = cfg, dist, device
        self.num_classes, self.channels = len(meta["classes"]), 3
        self.decode = resolve_decode(cfg.decode, device)
        self.size = size = MODELS[cfg.model]["img_size"]
        self.train_set = imagenet.TrainImages(imagenet.read_index(folder / "train.csv"), size=size, seed=cfg.seed,
                                              flip=cfg.flip != "no", interpolation=cfg.interpolation,
                                              decode=self.decode)
        val = imagenet.read_index(folder / "val.csv")
        self.test_set = imagenet.EvalImages(val[dist.shard(len(val))], size=size, crop_pct=cfg.eval_crop,
                                            interpolation=cfg.interpolation, decode=self.decode)
        self.batch_size = min(cfg.batch_size, len(self.train_set))
        self.steps = len(self.train_set) // self.batch_size
        self.randaugment = RandAugment.parse(cfg.randaugment) if cfg.randaugment else None
        mean, std = imagenet.MEAN, imagenet.STD
        self.fill = (mean * 255).round()
        self.mean, self.std = mean.to(device)[:, None, None], std.to(device)[:, None, None]
        self.sampler = imagenet.EpochSampler(len(self.train_set), self.batch_size, cfg.seed, dist.rank, dist.world)
        workers = cfg.workers if cfg.workers is not None else default_workers()
        # Their own generator: a DataLoader draws its workers' base seed at every `iter`, from the
        # global RNG otherwise, which the model's dropout and drop-path draw from (and a resumed
        # run restores). Per-image draws are seeded per image, so the base seed is unused.
        common = dict(num_workers=workers, persistent_workers=workers > 0, pin_memory=device.type == "cuda",
                      collate_fn=imagenet.collate, generator=torch.Generator())
        self.train_loader = DataLoader(self.train_set, batch_sampler=self.sampler, **common)
        self.test_loader = DataLoader(self.test_set, batch_size=cfg.eval_batch_size, **common)

    def normalize(self, x: Tensor) -> Tensor:
        return (x.float() / 255 - self.mean) / self.std

    def _images(self, batch: imagenet.Items) -> Tensor:
        return imagenet.to_images(batch, self.device, size=self.size, crop_pct=self.cfg.eval_crop,
                                  interpolation=self.cfg.interpolation)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        self.sampler.set_epoch(epoch, start)
        for step, batch in enumerate(self.train_loader, start=start):
            x, y = self._images(batch), batch.labels.to(self.device, non_blocking=True)
            gen = generator(self.cfg.seed, epoch, step, self.dist.rank)
            if self.randaugment:
                x = self.randaugment(x, gen, self.fill)
            yield _after_normalize(self.normalize(x), y, self.cfg, self.num_classes, gen)

    def test(self) -> Iterator[Batch]:
        for batch in self.test_loader:
            yield self.normalize(self._images(batch)), batch.labels.to(self.device, non_blocking=True)


def make_inputs(cfg: TrainConfig, device: torch.device, dist: Dist = Dist()) -> Inputs:
    """The run's input source: streamed for ImageNet, in memory for every other dataset."""
    return StreamInputs(cfg, device, dist) if cfg.dataset in STREAMED else MemoryInputs(cfg, device, dist)
