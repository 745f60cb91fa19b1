"""The data stage: upstream files -> resources/data/<name>/{train,test}.npz + meta.json.

Where the upstream files are looked for, when they are downloaded, and what happens to a file
that fails its check is decided in `mimetic.data.fetch` (docs/datasets.md explains it).

Each split is one uncompressed .npz with `x` (uint8, N x C x H x W) and `y` (int64): loading
it is a single read, and the whole set then goes to the training device (see inputs.MemoryInputs).
meta.json is written last, so its presence marks a complete folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mimetic import io
from mimetic.data import cifar, fashion_mnist, svhn, tiny_imagenet
from mimetic.data.core import (ARRAY_FILES, DATA_DIR, Arrays, DatasetUnavailable, Fingerprint, ImageData, Outputs,
                               output_files, stage_files)
from mimetic.data.fetch import Extracted, Source, config_key, locate, own_folder


@dataclass(frozen=True)
class Prepared:
    """A dataset the data stage downloads and converts."""

    sources: list[Source]
    read: Callable[[str, list[Path]], Arrays]  # reads the verified upstream files
    flip: bool  # whether a horizontal flip keeps an image's meaning (not for digits)
    extracted: Extracted | None = None  # the folder the archive extracts to; None: nothing to extract
    read_extracted: Callable[[str, Path], Arrays] | None = None  # reads that folder once verified


PREPARED: dict[str, Prepared] = {
    "cifar10": Prepared(cifar.SOURCES["cifar10"], cifar.read, flip=True, extracted=cifar.EXTRACTED["cifar10"],
                        read_extracted=cifar.read_extracted),
    "cifar100": Prepared(cifar.SOURCES["cifar100"], cifar.read, flip=True, extracted=cifar.EXTRACTED["cifar100"],
                         read_extracted=cifar.read_extracted),
    "svhn": Prepared(svhn.SOURCES["svhn"], svhn.read, flip=False),  # .mat files: nothing to extract
    # Flips allowed: a mirrored garment or shoe is still of its class (no two classes differ by
    # handedness), unlike a mirrored digit. Upstream's shoes all face left, so a flip adds a pose
    # the test set lacks, but never changes a label. The .gz files are read as they are.
    "fashion_mnist": Prepared(fashion_mnist.SOURCES["fashion_mnist"], fashion_mnist.read, flip=True),
    "tiny_imagenet": Prepared(tiny_imagenet.SOURCES["tiny_imagenet"], tiny_imagenet.read, flip=True,
                              extracted=tiny_imagenet.EXTRACTED["tiny_imagenet"],
                              read_extracted=tiny_imagenet.read_extracted),
}
SPLITS = ("train", "test")


def _write_npz(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    with io.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, x=x, y=y)  # a file object: np.savez would append .npz to a name


def fingerprint(arrays: Arrays, flip: bool) -> str:
    """The content of a prepared dataset as a run reads it: the four arrays (train x, y, test x, y),
    then the class names and `flip`; not the upstream files' paths."""
    fp = Fingerprint("mimetic.data.stage/v1")
    for array in (arrays.train_x, arrays.train_y, arrays.test_x, arrays.test_y):
        fp.add_array(array)
    return fp.add({"classes": arrays.classes, "flip": flip}).hexdigest()


def prepare(name: str, root: str | Path | None = None, outputs: Outputs = None) -> dict:
    """Find `name`'s upstream files (or their extracted folder) in `root`, verify them and write
    the uint8 arrays to `outputs` ("train", "test" .npz and "meta" .json, meta last); both default
    to resources/data/<name>. Only that default `root`, the project's own folder, is downloaded
    into; any other is only read. Returns the metadata."""
    if name not in PREPARED:
        raise ValueError(f"unknown dataset {name!r} for the data stage; choose one of {sorted(PREPARED)}")
    spec = PREPARED[name]
    root = Path(root) if root is not None else own_folder(name)
    out = output_files(name, outputs, ARRAY_FILES)
    found = locate(name, spec.sources, spec.extracted, root)
    if found.folder is None:
        arrays = spec.read(name, found.files)
        sources = [{"file": str(p), **check} for p, check in zip(found.files, found.checks)]
    else:
        arrays = spec.read_extracted(name, found.folder)
        sources = [{"file": str(found.folder / rel), "md5": md5} for rel, md5 in spec.extracted.md5s.items()]
        sources = sources or [{"file": str(found.folder), "md5": None}]  # no published checksums
    _write_npz(out["train"], arrays.train_x, arrays.train_y)
    _write_npz(out["test"], arrays.test_x, arrays.test_y)
    meta = {"name": name, "classes": arrays.classes, "flip": spec.flip,
            "shape": list(arrays.train_x.shape[1:]), "train": len(arrays.train_y), "test": len(arrays.test_y),
            "sources": sources, "fingerprint": fingerprint(arrays, spec.flip)}
    io.write_json(out["meta"], meta)
    return meta


def load_prepared(name: str, folder: Path | None = None) -> ImageData:
    """The prepared dataset `name` from `folder` (default resources/data/<name>)."""
    folder = folder if folder is not None else DATA_DIR / name
    meta_path = folder / ARRAY_FILES["meta"]
    if not meta_path.is_file():
        raise DatasetUnavailable(
            f"{name}: not prepared: {meta_path} does not exist. Run the data stage "
            f"(`snakemake --cores 1 {stage_files(name)['meta']}` or `python -m mimetic prepare {name}`); "
            f"it reads the upstream files from config key {config_key(name)}."
        )
    meta = json.loads(meta_path.read_text())
    tensors = []
    for split in SPLITS:
        with np.load(folder / ARRAY_FILES[split]) as z:
            tensors += [torch.from_numpy(z["x"]), torch.from_numpy(z["y"])]
    return ImageData(name, *tensors, num_classes=len(meta["classes"]), flip=meta["flip"])


def prepare_any(name: str, root: str | Path | None, outputs: Outputs, *, classes: Sequence[str] | None = None,
                train_per_class: int | None = None, val_per_class: int | None = None, workers: int = 8) -> dict:
    """The data stage for any dataset: `prepare` for in-memory ones, the index for ImageNet (its
    class subset: one number for the first N classes, or wnids). Returns the dataset's metadata."""
    if name != "imagenet":
        return prepare(name, root, outputs)
    from mimetic.data.imagenet import index

    chosen: int | Sequence[str] | None = classes
    if classes and len(classes) == 1 and classes[0].isdigit():
        chosen = int(classes[0])
    return index(root, outputs, classes=chosen, train_per_class=train_per_class, val_per_class=val_per_class,
                 workers=workers)
