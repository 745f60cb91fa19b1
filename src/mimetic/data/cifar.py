"""CIFAR-10 and CIFAR-100: the official python-pickle archives, read without extracting them.

URLs, file names and MD5s are torchvision's (torchvision.datasets.CIFAR10/CIFAR100).
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100

from mimetic.data.core import Arrays, CorruptFile
from mimetic.data.fetch import Source

# name -> (torchvision class holding the URL, MD5s and file names; label key in the batches)
_LAYOUT = {"cifar10": (CIFAR10, b"labels"), "cifar100": (CIFAR100, b"fine_labels")}
SOURCES = {name: [Source(cls.url, cls.filename, cls.tgz_md5)] for name, (cls, _) in _LAYOUT.items()}


def _unpickle(tar: tarfile.TarFile, member: str) -> dict:
    f = tar.extractfile(member)
    if f is None:
        raise KeyError(member)
    return pickle.load(f, encoding="bytes")


def _batches(tar: tarfile.TarFile, folder: str, files: list[list[str]], label_key: bytes
             ) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name, _md5 in files:
        batch = _unpickle(tar, f"{folder}/{name}")
        xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def read(name: str, files: list[Path]) -> Arrays:
    """The train (50,000) and test (10,000) images of `name` from its verified archive."""
    cls, label_key = _LAYOUT[name]
    (archive,) = files
    try:
        with tarfile.open(archive, "r:gz") as tar:
            train = _batches(tar, cls.base_folder, cls.train_list, label_key)
            test = _batches(tar, cls.base_folder, cls.test_list, label_key)
            meta = _unpickle(tar, f"{cls.base_folder}/{cls.meta['filename']}")
    except (tarfile.TarError, EOFError, OSError, KeyError, pickle.UnpicklingError) as e:
        raise CorruptFile(f"{name}: cannot read {archive} as the CIFAR python archive ({e!r})") from e
    classes = [c.decode() for c in meta[cls.meta["key"].encode()]]
    return Arrays(*train, *test, classes=classes)
