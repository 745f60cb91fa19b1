"""Tiny-ImageNet-200: the official zip (64x64 JPEGs), read without extracting it.

Classes are the 200 WordNet ids of wnids.txt in sorted order (as an ImageFolder would
number them). The test split has no public labels, so the labelled val split (10,000
images, labels in val/val_annotations.txt) serves as the test set.
"""

from __future__ import annotations

import io as _io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from mimetic.data.core import Arrays, CorruptFile
from mimetic.data.fetch import Source

ROOT = "tiny-imagenet-200"
# MD5 and size (248,100,043 bytes) as recorded by the many loaders of this archive.
SOURCES = {"tiny_imagenet": [Source("http://cs231n.stanford.edu/tiny-imagenet-200.zip", "tiny-imagenet-200.zip",
                                    "90528d7ca1a48142e341f4ef8d21d0de")]}


def _image(zf: zipfile.ZipFile, member: str) -> np.ndarray:
    # Some images are greyscale: convert so every image is (64, 64, 3).
    with Image.open(_io.BytesIO(zf.read(member))) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _stack(zf: zipfile.ZipFile, items: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    # Filled in place: one copy of the 1.2 GB training set in memory, not a list plus a stack.
    x = np.empty((len(items), 3, 64, 64), dtype=np.uint8)
    for i, (member, _) in enumerate(items):
        x[i] = _image(zf, member).transpose(2, 0, 1)
    return x, np.array([y for _, y in items], dtype=np.int64)


def _val_labels(zf: zipfile.ZipFile) -> list[tuple[str, str]]:
    """(file name, wnid) per line of val_annotations.txt (tab-separated, then a bounding box)."""
    lines = zf.read(f"{ROOT}/val/val_annotations.txt").decode().splitlines()
    return [tuple(line.split("\t")[:2]) for line in lines if line.strip()]


def read(name: str, files: list[Path]) -> Arrays:
    """Train (500 per class) and val (50 per class) images from the verified zip."""
    (archive,) = files
    try:
        with zipfile.ZipFile(archive) as zf:
            wnids = sorted(zf.read(f"{ROOT}/wnids.txt").decode().split())
            label = {w: i for i, w in enumerate(wnids)}
            train = sorted((m, label[m.split("/")[2]]) for m in zf.namelist()
                           if m.startswith(f"{ROOT}/train/") and m.endswith(".JPEG"))
            val = [(f"{ROOT}/val/images/{f}", label[w]) for f, w in _val_labels(zf)]
            return Arrays(*_stack(zf, train), *_stack(zf, val), classes=wnids)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as e:
        raise CorruptFile(f"{name}: cannot read {archive} as the Tiny-ImageNet zip ({e!r})") from e
