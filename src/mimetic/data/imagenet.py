"""ImageNet-1k from the user's own ImageFolder copy (never downloaded): the data stage's index.

The data stage only indexes the folder: it checks the layout, applies the class and per-class
subsets (ImageNet-100 and the like), opens every image once (a fast reduced-size JPEG decode) and
leaves out the unreadable ones by name, and writes resources/data/imagenet/{train,val}.csv
(path, label) + meta.json, so a run never rescans 1.3 million files. Training reads the index
(mimetic.train.stream).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from mimetic import io
from mimetic.data.core import INDEX_FILES, DatasetError, DatasetUnavailable, Outputs, output_files

SPLITS = ("train", "val")
ROOT_KEY = "data.imagenet.root"


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
    out = output_files("imagenet", outputs, INDEX_FILES)
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
