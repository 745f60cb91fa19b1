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
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from mimetic.data import ImageData, imagenet, load_dataset
from mimetic.data.augment import BatchAugment, Draws, RandAugment, generator
from mimetic.data.core import DATA_DIR, STREAMED, DatasetError, DatasetUnavailable
from mimetic.distributed import Dist
from mimetic.models import MODELS
from mimetic.prefetch import DEPTH, prefetch
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
        if MODELS[cfg.model]["img_size"] != data.image_size:
            raise ValueError(f"model={cfg.model!r} takes {MODELS[cfg.model]['img_size']}px images but "
                             f"dataset={cfg.dataset!r} has {data.image_size}px; pick a matching model")
        self.x, self.y = data.train_x.to(device), data.train_y.to(device)
        self.test_x, self.test_y = data.test_x.to(device), data.test_y.to(device)
        self.cfg, self.dist, self.device, self.prefetch = cfg, dist, device, prefetch
        self.flip = cfg.flip == "yes" or (cfg.flip == "auto" and data.flip)
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


def resolve_decode(decode: str, device: torch.device) -> str:
    """`auto` decodes JPEGs on the training device when it is a GPU, else in CPU workers."""
    return ("device" if device.type == "cuda" else "cpu") if decode == "auto" else decode


class StreamInputs:
    """ImageNet read from its index (`mimetic prepare imagenet`) by DataLoader workers.

    Per image (mimetic.data.imagenet): random-resized crop (scale 0.08-1, the crop box drawn from
    (seed, epoch, image)) and flip, decoded either in the workers with PIL (`decode: cpu`) or on
    the training device with nvJPEG through torchvision (`decode: device`; the workers only read
    the file, and the batch crosses the worker queue as one packed byte tensor). Per batch, on
    the device: RandAugment, normalization with the ImageNet mean and std, random erasing,
    mixup/cutmix, drawn from (seed, epoch, step) for the global batch.

    Under torchrun each rank loads and augments only its share of every global batch, with the
    global batch's draws: a data-parallel run sees exactly the inputs of a single process.
    """

    timeout = 300.0  # seconds without a batch from the workers before the run stops, naming the likely causes

    def __init__(self, cfg: TrainConfig, device: torch.device, dist: Dist = Dist(), prefetch: int = DEPTH):
        folder = Path(cfg.data_root) if cfg.data_root else DATA_DIR / cfg.dataset
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            raise DatasetUnavailable(f"{cfg.dataset}: not indexed: {meta_path} does not exist. Run the data stage "
                                     f"(`mimetic prepare imagenet --root <your copy>`, or the workflow with the "
                                     f"config key {imagenet.ROOT_KEY} set)")
        meta = json.loads(meta_path.read_text())
        self.cfg, self.dist, self.device, self.prefetch = cfg, dist, device, prefetch
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
        check_mix_shards(cfg, self.batch_size, dist)
        self.augment = batch_augment(cfg, device, (3, size, size), self.num_classes, imagenet.MEAN, imagenet.STD)
        self.sampler = imagenet.EpochSampler(len(self.train_set), self.batch_size, cfg.seed, dist.rank, dist.world)
        workers = cfg.workers if cfg.workers is not None else default_workers()
        # Their own generator: a DataLoader draws its workers' base seed at every `iter`, from the
        # global RNG otherwise, which the model's dropout and drop-path draw from (and a resumed
        # run restores). Per-image draws are seeded per image, so the base seed is unused.
        common = dict(num_workers=workers, persistent_workers=workers > 0, pin_memory=device.type == "cuda",
                      collate_fn=imagenet.collate, generator=torch.Generator(),
                      timeout=self.timeout if workers > 0 else 0)
        self.train_loader = DataLoader(self.train_set, batch_sampler=self.sampler, **common)
        self.test_loader = DataLoader(self.test_set, batch_size=cfg.eval_batch_size, **common)

    def _images(self, batch: imagenet.Packed, d: Draws) -> tuple[Tensor, Tensor]:
        imagenet.plan_batch(d, batch)
        t = d.to(self.device)
        x = imagenet.to_images(batch, d, t, self.device, size=self.size, interpolation=self.cfg.interpolation)
        return x, t

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        self.sampler.set_epoch(epoch, start)
        return prefetch(lambda: self._epoch(epoch, start), self.device, self.prefetch)

    def _epoch(self, epoch: int, start: int) -> Iterator[Batch]:
        mine = self.dist.shard(self.batch_size)
        for step, batch in enumerate(self._loaded(self.train_loader), start=start):
            d = Draws()
            self.augment.plan(d, generator(self.cfg.seed, epoch, step), self.batch_size, mine)
            x, t = self._images(batch, d)
            yield self.augment.apply(x, t["labels"], d, t)

    def test(self) -> Iterator[Batch]:
        return prefetch(self._test, self.device, self.prefetch)

    def _test(self) -> Iterator[Batch]:
        for batch in self._loaded(self.test_loader):
            x, t = self._images(batch, Draws())
            yield self.augment.normalize(x), t["labels"]

    def _loaded(self, loader: DataLoader) -> Iterator[imagenet.Packed]:
        """The loader's batches; a worker that died or stopped answering ends the run with the
        likely causes, never a hang (DataLoader's timeout)."""
        batches = iter(loader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except DatasetError:
                raise
            except RuntimeError as e:
                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                raise DatasetError(f"imagenet: the DataLoader workers stopped ({e}). Likely causes: the open-file "
                                   f"limit (`ulimit -n` is {soft}, at most {hard}: raise it, e.g. `ulimit -n "
                                   f"{max(hard, 65536) if hard != resource.RLIM_INFINITY else 65536}`), a worker "
                                   "killed for memory (see `dmesg`), or a stalled file system; fewer `workers` or a "
                                   "smaller batch need less of both") from e
            yield batch


def make_inputs(cfg: TrainConfig, device: torch.device, dist: Dist = Dist(), prefetch: int = DEPTH) -> Inputs:
    """The run's input source: streamed for ImageNet, in memory for every other dataset."""
    source = StreamInputs if cfg.dataset in STREAMED else MemoryInputs
    return source(cfg, device, dist, prefetch=prefetch)
