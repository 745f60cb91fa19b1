"""The data stage: upstream files -> resources/data/<name>/{train,test}.npz + meta.json.

Each split is one uncompressed .npz with `x` (uint8, N x C x H x W) and `y` (int64): loading
it is a single read, and the whole set then goes to the training device (see train.Batches).
meta.json is written last, so its presence marks a complete folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mimetic import io
from mimetic.data import cifar, svhn, tiny_imagenet
from mimetic.data.core import DATA_DIR, Arrays, DatasetUnavailable, ImageData, register
from mimetic.data.fetch import Source, config_key, fetch


@dataclass(frozen=True)
class Prepared:
    """A dataset the data stage downloads and converts."""

    sources: list[Source]
    read: Callable[[str, list[Path]], Arrays]
    flip: bool  # whether a horizontal flip keeps an image's meaning (not for digits)


PREPARED: dict[str, Prepared] = {
    "cifar10": Prepared(cifar.SOURCES["cifar10"], cifar.read, flip=True),
    "cifar100": Prepared(cifar.SOURCES["cifar100"], cifar.read, flip=True),
    "svhn": Prepared(svhn.SOURCES["svhn"], svhn.read, flip=False),
    "tiny_imagenet": Prepared(tiny_imagenet.SOURCES["tiny_imagenet"], tiny_imagenet.read, flip=True),
}
SPLITS = ("train", "test")


def _write_npz(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    with io.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, x=x, y=y)  # a file object: np.savez would append .npz to a name


def prepare(name: str, root: str | Path | None = None, out: str | Path | None = None) -> dict:
    """Fetch `name`'s upstream files into (or find them in) `root`, verify them and write
    the uint8 arrays into `out`; both default to resources/data/<name>. Returns the metadata."""
    if name not in PREPARED:
        raise ValueError(f"unknown dataset {name!r} for the data stage; choose one of {sorted(PREPARED)}")
    spec = PREPARED[name]
    root = Path(root) if root is not None else DATA_DIR / name
    out = Path(out) if out is not None else DATA_DIR / name
    files = [fetch(name, source, root) for source in spec.sources]
    arrays = spec.read(name, files)
    _write_npz(out / "train.npz", arrays.train_x, arrays.train_y)
    _write_npz(out / "test.npz", arrays.test_x, arrays.test_y)
    meta = {"name": name, "classes": arrays.classes, "flip": spec.flip,
            "shape": list(arrays.train_x.shape[1:]), "train": len(arrays.train_y), "test": len(arrays.test_y),
            "sources": [{"file": str(p), "md5": s.md5} for p, s in zip(files, spec.sources)]}
    io.write_json(out / "meta.json", meta)
    return meta


def load_prepared(name: str, folder: Path | None = None) -> ImageData:
    """The prepared dataset `name` from `folder` (default resources/data/<name>)."""
    folder = folder if folder is not None else DATA_DIR / name
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise DatasetUnavailable(
            f"{name}: not prepared: {meta_path} does not exist. Run the data stage "
            f"(`snakemake --cores 1 {DATA_DIR / name / 'meta.json'}` or `python -m mimetic prepare {name}`); "
            f"it reads the upstream files from config key {config_key(name)}."
        )
    meta = json.loads(meta_path.read_text())
    tensors = []
    for split in SPLITS:
        with np.load(folder / f"{split}.npz") as z:
            tensors += [torch.from_numpy(z["x"]), torch.from_numpy(z["y"])]
    return ImageData(name, *tensors, num_classes=len(meta["classes"]), flip=meta["flip"])


def _register(name: str) -> None:
    register(name)(lambda root: load_prepared(name, root))


for _name in PREPARED:
    _register(_name)
