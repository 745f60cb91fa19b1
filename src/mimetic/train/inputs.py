"""What a run's model sees: the augmented, normalized batches of each epoch, and the test set.

Two sources, one interface (`Inputs`): datasets held in memory on the training device
(`MemoryInputs`: CIFAR, SVHN, Tiny-ImageNet, digits) and ImageNet streamed from its indexed
folder (`mimetic.train.stream.StreamInputs`). Every random draw is a function of (seed, epoch, step) or (seed, epoch,
image), never of the model's RNG, so two arms at one seed see the same images in the same order
with the same augmentation, and a resumed run sees what it would have seen uninterrupted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Protocol

import torch
from torch import Tensor

from mimetic.data import ImageData, load_dataset
from mimetic.data.core import STREAMED
from mimetic.train.augment import BatchAugment, Draws, RandAugment, generator
from mimetic.train.distributed import Dist
from mimetic.train.models import check_image_size
from mimetic.train.prefetch import DEPTH, prefetch
from mimetic.train.recipe import TrainConfig

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


def check_mix_shards(cfg: TrainConfig, batch_size: int, dist: Dist) -> None:
    """Mixup/cutmix mix neighbouring images (augment.partners): each rank's share of a batch
    must start at an even image, so both partners are its own."""
    if (cfg.mixup > 0 or cfg.cutmix > 0) and any(Dist(r, dist.world).shard(batch_size).start % 2
                                                  for r in range(dist.world)):
        raise ValueError(f"batch_size={batch_size} over {dist.world} processes: with mixup/cutmix each process's "
                         f"share must be even (each image is mixed with its neighbour); use a batch_size divisible "
                         f"by {2 * dist.world}")


def batch_augment(cfg: TrainConfig, device: torch.device, shape: tuple[int, int, int], num_classes: int,
                  mean: Tensor, std: Tensor, *, crop_padding: int = 0, flip: bool = False) -> BatchAugment:
    return BatchAugment(device, shape, num_classes, mean, std, cfg.seed, crop_padding=crop_padding, flip=flip,
                        randaugment=RandAugment.parse(cfg.randaugment) if cfg.randaugment else None,
                        random_erasing=cfg.random_erasing, mixup=cfg.mixup, cutmix=cfg.cutmix)


class MemoryInputs:
    """A dataset on the device, served in shuffled, augmented, normalized batches: crop, flip,
    RandAugment on uint8, then normalisation, random erasing and mixup/cutmix.

    Each global batch's draws come from (seed, epoch, step); every rank plans and augments only
    its shard, so a data-parallel run sees exactly the inputs of a single-process run. Batches
    are made ahead (`prefetch`), on CUDA on a side stream.
    """

    def __init__(self, cfg: TrainConfig, device: torch.device, dist: Dist = Dist(), data: ImageData | None = None,
                 prefetch: int = DEPTH):
        """data: the dataset (default: load cfg.dataset); benchmarks pass their own.
        prefetch: batches made ahead (0: made when asked for, in the caller's thread)."""
        data = data if data is not None else load_dataset(cfg.dataset, cfg.data_root)
        check_image_size(cfg.model, cfg.dataset, data.image_size)
        self.x, self.y = data.train_x.to(device), data.train_y.to(device)
        self.test_x, self.test_y = data.test_x.to(device), data.test_y.to(device)
        self.cfg, self.dist, self.device, self.prefetch = cfg, dist, device, prefetch
        self.flip = cfg.flips(data.flip)
        self.batch_size = min(cfg.batch_size, len(self.x))
        self.steps = len(self.x) // self.batch_size
        check_mix_shards(cfg, self.batch_size, dist)
        self.num_classes, self.channels = data.num_classes, data.channels
        mean, std = data.stats()
        self.augment = batch_augment(cfg, device, tuple(data.train_x.shape[1:]), data.num_classes, mean, std,
                                     crop_padding=cfg.crop_padding, flip=self.flip)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        return prefetch(lambda: self._epoch(epoch, start), self.device, self.prefetch)

    def batch(self, perm: Tensor, epoch: int, step: int) -> Batch:
        """This rank's share of global batch `step` of `epoch` (`perm`: the epoch's order)."""
        mine = self.dist.shard(self.batch_size)
        d = Draws()
        d["index"] = perm[step * self.batch_size : (step + 1) * self.batch_size][mine]
        self.augment.plan(d, generator(self.cfg.seed, epoch, step), self.batch_size, mine)
        t = d.to(self.device)
        return self.augment.apply(self.x[t["index"]], self.y[t["index"]], d, t)

    def order(self, epoch: int) -> Tensor:
        """The epoch's order of the training images, from (seed, epoch): the same for every arm."""
        return torch.randperm(len(self.x), generator=generator(self.cfg.seed, epoch))

    def _epoch(self, epoch: int, start: int) -> Iterator[Batch]:
        perm = self.order(epoch)
        for step in range(start, self.steps):
            yield self.batch(perm, epoch, step)

    def test(self) -> Iterator[Batch]:
        return prefetch(self._test, self.device, self.prefetch)

    def _test(self) -> Iterator[Batch]:
        batch_size = self.cfg.eval_batch_size
        mine = self.dist.shard(len(self.test_x))
        x, y = self.test_x[mine], self.test_y[mine]
        for i in range(0, len(x), batch_size):
            yield self.augment.normalize(x[i : i + batch_size]), y[i : i + batch_size]


def available_cpus() -> int:
    """The CPUs this process may use (SLURM's cpus-per-task, taskset), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    """DataLoader workers per training process: the available CPUs shared among the node's
    ranks, one kept for the training loop."""
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, available_cpus() // ranks - 1)


def make_inputs(cfg: TrainConfig, device: torch.device, dist: Dist = Dist(), prefetch: int = DEPTH) -> Inputs:
    """The run's input source: streamed for ImageNet, in memory for every other dataset."""
    if cfg.dataset in STREAMED:
        from mimetic.train.stream import StreamInputs  # torchvision's decoders: only where ImageNet is read

        return StreamInputs(cfg, device, dist, prefetch=prefetch)
    return MemoryInputs(cfg, device, dist, prefetch=prefetch)
