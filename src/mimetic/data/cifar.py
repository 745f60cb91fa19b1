"""CIFAR-10 and CIFAR-100: the official python-pickle archives, read without extracting them,
or the folders extracted from them (cifar-10-batches-py/, cifar-100-python/), as torchvision keeps them.

URLs, file names and MD5s (of the archives and of each extracted file) are torchvision's
(torchvision.datasets.CIFAR10/CIFAR100: url, tgz_md5, train_list, test_list, meta).
"""

from __future__ import annotations

import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100

from mimetic.data.core import Arrays, CorruptFile
from mimetic.data.fetch import Extracted, Source

# name -> (torchvision class holding the URL, MD5s and file names; label key in the batches)
_LAYOUT = {"cifar10": (CIFAR10, b"labels"), "cifar100": (CIFAR100, b"fine_labels")}
SOURCES = {name: [Source(cls.url, cls.filename, cls.tgz_md5)] for name, (cls, _) in _LAYOUT.items()}
EXTRACTED = {name: Extracted(cls.base_folder, {**dict(cls.train_list), **dict(cls.test_list),
                                               cls.meta["filename"]: cls.meta["md5"]})
             for name, (cls, _) in _LAYOUT.items()}
_ERRORS = (tarfile.TarError, EOFError, OSError, KeyError, ValueError, pickle.UnpicklingError)


def _unpickle(tar: tarfile.TarFile, member: str) -> dict:
    f = tar.extractfile(member)
    if f is None:
        raise KeyError(member)
    return pickle.load(f, encoding="bytes")


def _batches(load: Callable[[str], dict], files: list[list[str]], label_key: bytes
             ) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name, _md5 in files:
        batch = load(name)
        xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _read(name: str, load: Callable[[str], dict]) -> Arrays:
    """Both splits and the class names, `load` unpickling one file of the base folder by name."""
    cls, label_key = _LAYOUT[name]
    train = _batches(load, cls.train_list, label_key)
    test = _batches(load, cls.test_list, label_key)
    meta = load(cls.meta["filename"])
    classes = [c.decode() for c in meta[cls.meta["key"].encode()]]
    return Arrays(*train, *test, classes=classes)


def read(name: str, files: list[Path]) -> Arrays:
    """The train (50,000) and test (10,000) images of `name` from its verified archive."""
    (archive,) = files
    base = _LAYOUT[name][0].base_folder
    try:
        with tarfile.open(archive, "r:gz") as tar:
            return _read(name, lambda file: _unpickle(tar, f"{base}/{file}"))
    except _ERRORS as e:
        raise CorruptFile(f"{name}: cannot read {archive} as the CIFAR python archive ({e!r})") from e


def read_extracted(name: str, folder: Path) -> Arrays:
    """The same arrays from the verified extracted folder (e.g. <root>/cifar-10-batches-py)."""

    def load(file: str) -> dict:
        with open(folder / file, "rb") as f:
            return pickle.load(f, encoding="bytes")

    try:
        return _read(name, load)
    except _ERRORS as e:
        raise CorruptFile(f"{name}: cannot read {folder} as the extracted CIFAR python folder ({e!r}); it was left "
                          f"untouched: replace it with an intact copy") from e
