"""ImageNet-1k from the user's own ImageFolder copy (never downloaded), read while training.

The data stage only indexes the folder: it checks the layout, applies the class and per-class
subsets (ImageNet-100 and the like), opens every image once (a fast reduced-size JPEG decode) and
leaves out the unreadable ones by name, and writes resources/data/imagenet/{train,val}.csv
(path, label) + meta.json, so a run never rescans 1.3 million files.

Training (mimetic.inputs.StreamInputs) reads the index through DataLoader workers. Each image's
random-resized crop box and flip are drawn from (seed, epoch, image index) alone: the same for
every arm, any worker count and a resumed run. Two decode paths give the same crops:

- "cpu": the worker decodes with PIL (libjpeg-turbo) and crops/resizes with PIL (antialiased);
- "device": the worker only reads the file's bytes and header; the batch is decoded with nvJPEG
  (torchvision.io.decode_jpeg on the training device) and cropped/resized there (antialiased).
  Files nvJPEG does not take (CMYK JPEGs, a PNG named .JPEG) are decoded by the worker with PIL.

Evaluation: resize to size / crop_pct (256 for 224 at the usual 0.875), centre crop, as timm.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import random
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, Sampler
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode

from mimetic import io
from mimetic.data.augment import generator
from mimetic.distributed import Dist
from mimetic.data.core import DatasetError, DatasetUnavailable, Outputs, output_files

SPLITS = ("train", "val")
ROOT_KEY = "data.imagenet.root"
# timm's IMAGENET_DEFAULT_MEAN / _STD
MEAN = torch.tensor([0.485, 0.456, 0.406])
STD = torch.tensor([0.229, 0.224, 0.225])
# torchvision's RandomResizedCrop defaults, which timm's ResNet and DeiT recipes keep
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


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


def _unreadable(path: str) -> str | None:
    """Why PIL cannot decode `path`, or None. JPEGs decode at 1/8 scale (draft mode): every
    entropy-coded block is still read, so truncated and corrupt files fail, at a fraction of the cost."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
        return None
    except Exception as e:  # noqa: BLE001 - any decoder error makes the file unusable
        return f"{type(e).__name__}: {e}"


def _choose_classes(classes: list[str], chosen: int | Sequence[str] | None) -> list[str]:
    if chosen is None:
        return classes
    if isinstance(chosen, int):
        if not 1 <= chosen <= len(classes):
            raise DatasetError(f"imagenet: classes={chosen}: the copy has {len(classes)} classes")
        return classes[:chosen]
    missing = sorted(set(chosen) - set(classes))
    if missing:
        raise DatasetError(f"imagenet: classes {missing[:5]} are not folders of the copy's train/")
    return sorted(chosen)


def index(root: str | Path | None, outputs: Outputs = None, *, classes: int | Sequence[str] | None = None,
          train_per_class: int | None = None, val_per_class: int | None = None, workers: int = 8,
          log=print) -> dict:
    """Check the ImageFolder copy at `root` and write its index to `outputs` ("train", "test" CSV
    and "meta" .json, default resources/data/imagenet/{train,val}.csv, meta.json); returns the metadata.

    classes: all (None), the first N in sorted order, or a list of wnids (e.g. ImageNet-100's).
    Unreadable images are left out of the index, each logged by name and listed in meta.json.
    """
    folders = {split: _folder(root, split) for split in SPLITS}
    all_classes, _ = find_classes(str(folders["train"]))
    val_classes, _ = find_classes(str(folders["val"]))
    if val_classes != all_classes:
        missing = sorted(set(all_classes) ^ set(val_classes))[:5]
        raise DatasetUnavailable(f"imagenet: {folders['train']} and {folders['val']} hold different classes "
                                 f"(e.g. {missing}); both need one folder per class")
    kept = _choose_classes(all_classes, classes)
    class_to_idx = {wnid: i for i, wnid in enumerate(kept)}
    out = output_files("imagenet", outputs, {"train": "train.csv", "test": "val.csv", "meta": "meta.json"})
    counts, unreadable = {}, {}
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        samples = _samples(folders[split], class_to_idx, per_class)
        with ProcessPoolExecutor(max(1, workers)) as pool:
            errors = list(pool.map(_unreadable, [p for p, _ in samples], chunksize=256))
        for (path, _), error in zip(samples, errors):
            if error:
                log(f"imagenet: left out {path}: {error}")
                unreadable[path] = error
        samples = [s for s, error in zip(samples, errors) if not error]
        counts[split] = len(samples)
        with io.atomic_path(out["train" if split == "train" else "test"]) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([("path", "label"), *samples])
    meta = {"name": "imagenet", "root": str(folders["train"].parent), "classes": kept,
            "train_per_class": train_per_class, "val_per_class": val_per_class, **counts, "unreadable": unreadable}
    io.write_json(out["meta"], meta)
    return meta


def read_index(csv_path: str | Path) -> list[tuple[str, int]]:
    with open(csv_path, newline="") as f:
        return [(r["path"], int(r["label"])) for r in csv.DictReader(f)]


def _open(path: str) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"imagenet: cannot read {path} ({type(e).__name__}: {e}); re-run the data stage "
                           "(it leaves unreadable files out of the index) or replace the file") from e


def _rgb_tensor(img: Image.Image) -> Tensor:
    return TF.pil_to_tensor(img.convert("RGB"))


def crop_box(width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params (scale 0.08-1, ratio 3/4-4/3), drawing from
    `rng` instead of the global generators: (top, left, height, width)."""
    area = height * width
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    in_ratio = width / height  # fallback: the central crop at the nearest allowed ratio
    if in_ratio < RATIO[0]:
        w, h = width, int(round(width / RATIO[0]))
    elif in_ratio > RATIO[1]:
        h, w = height, int(round(height * RATIO[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@dataclasses.dataclass
class Item:
    """One image on its way to the device: decoded pixels (uint8, 3 x H x W, already cropped and
    resized on the "cpu" path) or the JPEG file's bytes (1-D uint8), and what remains to do."""

    data: Tensor
    label: int
    path: str
    box: tuple[int, int, int, int] | None = None  # crop (top, left, h, w); None: centre crop for evaluation
    flip: bool = False


@dataclasses.dataclass
class Items:
    """A batch (the collate function's output, made in the worker): the images that came decoded,
    stacked there (so the training process only copies one tensor to the device), and the files
    still to decode, each with its position in the batch."""

    labels: Tensor
    decoded: Tensor  # (n, 3, S, S) uint8
    decoded_at: Tensor
    raw: list[Item]
    raw_at: Tensor

    def pin_memory(self) -> "Items":  # DataLoader(pin_memory=True) calls this
        return dataclasses.replace(self, labels=self.labels.pin_memory(), decoded=self.decoded.pin_memory())


def collate(items: list[Item]) -> Items:
    done = [k for k, it in enumerate(items) if it.data.ndim == 3]
    raw = [k for k, it in enumerate(items) if it.data.ndim == 1]
    decoded = torch.stack([items[k].data for k in done]) if done else torch.empty(0, dtype=torch.uint8)
    return Items(torch.tensor([it.label for it in items]), decoded, torch.tensor(done, dtype=torch.long),
                 [items[k] for k in raw], torch.tensor(raw, dtype=torch.long))


def _jpeg_bytes(path: str) -> tuple[Tensor, tuple[int, int]] | None:
    """(raw bytes, (width, height)) of a JPEG nvJPEG can decode; None for anything else, an
    unreadable header included (the caller's PIL decode then names the file)."""
    try:
        with Image.open(path) as img:
            size, ok = img.size, img.format == "JPEG" and img.mode in ("RGB", "L")
        if not ok:
            return None
        with open(path, "rb") as f:
            return torch.frombuffer(bytearray(f.read()), dtype=torch.uint8), size
    except Exception:  # noqa: BLE001 - any failure: decoded by PIL instead
        return None


class _Images(Dataset):
    def __init__(self, samples: Sequence[tuple[str, int]], size: int, interpolation: str, decode: str):
        if decode not in ("cpu", "device"):
            raise ValueError(f"decode={decode!r}: choose cpu or device")
        self.samples, self.size, self.decode = list(samples), size, decode
        self.interpolation = InterpolationMode(interpolation)

    def __len__(self) -> int:
        return len(self.samples)


class TrainImages(_Images):
    """Training images, indexed by (image, epoch): a crop box and flip drawn from (seed, epoch, image)."""

    def __init__(self, samples: Sequence[tuple[str, int]], *, size: int, seed: int, flip: bool = True,
                 interpolation: str = "bilinear", decode: str = "cpu"):
        super().__init__(samples, size, interpolation, decode)
        self.seed, self.flip = seed, flip

    def __getitem__(self, key: tuple[int, int]) -> Item:
        i, epoch = key
        path, label = self.samples[i]
        rng = random.Random(f"{self.seed}-{epoch}-{i}")  # str seeds hash the same in every process
        raw = _jpeg_bytes(path) if self.decode == "device" else None
        data, size = raw if raw else (None, None)
        if data is None:
            img = _open(path)
            size = img.size
        box = crop_box(*size, rng)
        flip = self.flip and rng.random() < 0.5
        if data is None:
            top, left, h, w = box
            img = TF.resized_crop(img, top, left, h, w, [self.size, self.size], self.interpolation)
            out = _rgb_tensor(img)
            return Item(out.flip(-1) if flip else out, label, path)
        return Item(data, label, path, box, flip)


class EvalImages(_Images):
    """Evaluation images: resize the short side to size / crop_pct, centre crop (on the "cpu" path
    here, on the "device" path in `to_images`)."""

    def __init__(self, samples: Sequence[tuple[str, int]], *, size: int, crop_pct: float = 0.875,
                 interpolation: str = "bilinear", decode: str = "cpu"):
        super().__init__(samples, size, interpolation, decode)
        self.crop_pct = crop_pct

    def __getitem__(self, i: int) -> Item:
        path, label = self.samples[i]
        raw = _jpeg_bytes(path) if self.decode == "device" else None
        if raw:
            return Item(raw[0], label, path)
        return Item(_center(_rgb_tensor(_open(path)), self.size, self.crop_pct, self.interpolation), label, path)


def _center(img: Tensor, size: int, crop_pct: float, interpolation: InterpolationMode) -> Tensor:
    """timm's evaluation transform: Resize(floor(size / crop_pct)) on the short side, CenterCrop(size)."""
    img = TF.resize(img, [math.floor(size / crop_pct)], interpolation, antialias=True)
    return TF.center_crop(img, [size, size])


def to_images(batch: Items, device: torch.device, *, size: int, crop_pct: float = 0.875,
              interpolation: str = "bilinear") -> Tensor:
    """The batch as uint8 (B, 3, S, S) on `device`: decodes (nvJPEG on CUDA) and crops the items
    that came as file bytes; the rest came decoded from the workers."""
    if not batch.raw:
        return batch.decoded.to(device, non_blocking=True)
    out = torch.empty((len(batch.labels), 3, size, size), dtype=torch.uint8, device=device)
    if len(batch.decoded):
        out[batch.decoded_at.to(device)] = batch.decoded.to(device, non_blocking=True)
    mode = InterpolationMode(interpolation)
    crops = []
    for it, img in zip(batch.raw, _decode(batch.raw, device)):
        if it.box is None:
            crops.append(_center(img, size, crop_pct, mode))
        else:
            img = TF.resized_crop(img, *it.box, [size, size], mode, antialias=True)
            crops.append(img.flip(-1) if it.flip else img)
    out[batch.raw_at.to(device)] = torch.stack(crops)
    return out


def _decode(items: list[Item], device: torch.device) -> list[Tensor]:
    """Batched JPEG decoding on `device`. If the batch fails, each file is decoded alone, and one
    the device decoder rejects is read with PIL instead (which names it if it cannot either)."""
    try:
        return decode_jpeg([it.data for it in items], mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        out = []
        for it in items:
            try:
                out.append(decode_jpeg(it.data, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                out.append(_rgb_tensor(_open(it.path)).to(device))
        return out


class EpochSampler(Sampler[list[tuple[int, int]]]):
    """This rank's share of each global batch of one epoch, as (image, epoch) keys, from a step on.

    The order is a permutation drawn from (seed, epoch): the same for every arm at one seed,
    every world size and a resumed run. The last partial batch is dropped.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.n // self.batch_size - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm = torch.randperm(self.n, generator=generator(self.seed, self.epoch)).tolist()
        mine = Dist(self.rank, self.world).shard(self.batch_size)
        for step in range(self.start, self.n // self.batch_size):
            batch = perm[step * self.batch_size : (step + 1) * self.batch_size]
            yield [(i, self.epoch) for i in batch[mine]]
