"""ImageNet-1k from the user's own ImageFolder copy (never downloaded), read by worker processes.

The data stage only indexes the folder: it checks the layout, applies the per-class subset
and writes resources/data/imagenet/{train,val}.csv (path, label) + meta.json, so a run never
rescans 1.3 million files. Images are decoded and augmented per sample in DataLoader workers
with timm's transforms, in one of two styles:

- "resnet": the standard ResNet pipeline the paper's ImageNet claim refers to: random-resized
  crop (scale 0.08-1) + horizontal flip for training; resize to size/0.875 + centre crop for
  evaluation; bilinear.
- "deit": timm's DeiT recipe: random-resized crop + flip + RandAugment rand-m9-mstd0.5-inc1 +
  random erasing 0.25 (per-pixel noise); bicubic. (Mixup/cutmix belong to the batch, not the
  sample: apply mimetic.data.augment.mix to the loader's batches.)

Training integration (a train loop over these loaders) is not part of this module.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.data import create_transform
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, find_classes, make_dataset

from mimetic import io
from mimetic.data.core import DATA_DIR, DatasetUnavailable, Outputs, output_files

STYLES = ("resnet", "deit")
SPLITS = ("train", "val")
ROOT_KEY = "data.imagenet.root"
OUT = DATA_DIR / "imagenet"

_TRANSFORMS: dict[str, dict[str, Any]] = {
    "resnet": {"train": dict(scale=(0.08, 1.0), hflip=0.5, color_jitter=None, interpolation="bilinear"),
               "val": dict(crop_pct=0.875, interpolation="bilinear")},
    "deit": {"train": dict(scale=(0.08, 1.0), hflip=0.5, auto_augment="rand-m9-mstd0.5-inc1",
                           interpolation="bicubic", re_prob=0.25, re_mode="pixel", re_count=1),
             "val": dict(crop_pct=0.875, interpolation="bicubic")},
}


def _folder(root: str | Path | None, split: str) -> Path:
    if root is None:
        raise DatasetUnavailable(f"imagenet: no folder given; ImageNet is never downloaded. Set the config key "
                                 f"{ROOT_KEY} to your copy (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG)")
    folder = Path(root).resolve() / split  # absolute, so the index works from any directory
    if not folder.is_dir():
        raise DatasetUnavailable(f"imagenet: {folder} is not a folder; the config key {ROOT_KEY} must name a copy "
                                 f"in ImageFolder layout (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG)")
    return folder


def _samples(folder: Path, class_to_idx: dict[str, int], per_class: int | None) -> list[tuple[str, int]]:
    """torchvision's ImageFolder scan (sorted per class); the first `per_class` of each class."""
    samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS)
    if per_class is None:
        return samples
    kept: dict[int, int] = {}
    out = []
    for path, label in samples:
        if kept.get(label, 0) < per_class:
            kept[label] = kept.get(label, 0) + 1
            out.append((path, label))
    return out


def index(root: str | Path | None, outputs: Outputs = None, *, image_size: int = 224,
          train_per_class: int | None = None, val_per_class: int | None = None) -> dict:
    """Check the ImageFolder copy at `root` and write its index to `outputs` ("train", "test" CSV
    and "meta" .json, default resources/data/imagenet/{train,val}.csv, meta.json); returns the metadata."""
    folders = {split: _folder(root, split) for split in SPLITS}
    classes, class_to_idx = find_classes(str(folders["train"]))
    val_classes, _ = find_classes(str(folders["val"]))
    if val_classes != classes:
        missing = sorted(set(classes) ^ set(val_classes))[:5]
        raise DatasetUnavailable(f"imagenet: {folders['train']} and {folders['val']} hold different classes "
                                 f"(e.g. {missing}); both need one folder per class")
    out = output_files("imagenet", outputs, {"train": "train.csv", "test": "val.csv", "meta": "meta.json"})
    counts = {}
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        samples = _samples(folders[split], class_to_idx, per_class)
        counts[split] = len(samples)
        with io.atomic_path(out["train" if split == "train" else "test"]) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([("path", "label"), *samples])
    meta = {"name": "imagenet", "root": str(folders["train"].parent), "classes": classes, "image_size": image_size,
            "train_per_class": train_per_class, "val_per_class": val_per_class, **counts}
    io.write_json(out["meta"], meta)
    return meta


class IndexedImages(Dataset):
    """Images listed in an index CSV, decoded with PIL and passed through `transform`."""

    def __init__(self, csv_path: str | Path, transform: Any):
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        self.samples = [(r["path"], int(r["label"])) for r in rows]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        return self.transform(default_loader(path)), label


def transform(style: str, split: str, image_size: int) -> Any:
    """timm's transform for `style` ("resnet" or "deit") and `split` ("train" or "val")."""
    if style not in STYLES:
        raise ValueError(f"style={style!r}: choose one of {STYLES}")
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: choose one of {SPLITS}")
    return create_transform(image_size, is_training=split == "train", **_TRANSFORMS[style][split])


def _seed_worker(worker_id: int) -> None:
    # timm's RandAugment draws from NumPy's global generator, which DataLoader does not seed.
    np.random.seed(torch.initial_seed() % 2**32)


def loader(split: str, *, style: str = "resnet", batch_size: int = 256, workers: int = 8, seed: int = 0,
           index_dir: str | Path = OUT, image_size: int | None = None, pin_memory: bool = False) -> DataLoader:
    """Batches of normalised float images (B, 3, S, S) and labels from the index in `index_dir`.

    image_size: the crop size S; default the one recorded by `index` (config data.imagenet.image_size).
    Training batches are shuffled by a generator seeded with `seed` and drop the last partial batch;
    augmentation in each worker is seeded from it too (reproducible for a fixed worker count).
    """
    index_dir = Path(index_dir)
    meta_path = index_dir / "meta.json"
    if not meta_path.is_file():
        raise DatasetUnavailable(f"imagenet: not indexed: {meta_path} does not exist. Run the data stage "
                                 f"(`python -m mimetic prepare imagenet`) with the config key {ROOT_KEY} set")
    size = image_size or json.loads(meta_path.read_text())["image_size"]
    train = split == "train"
    dataset = IndexedImages(index_dir / f"{split}.csv", transform(style, split, size))
    return DataLoader(dataset, batch_size=batch_size, shuffle=train, drop_last=train, num_workers=workers,
                      persistent_workers=workers > 0, pin_memory=pin_memory, worker_init_fn=_seed_worker,
                      generator=torch.Generator().manual_seed(seed))
