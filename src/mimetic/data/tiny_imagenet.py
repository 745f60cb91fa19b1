"""Tiny-ImageNet-200: the official zip (64x64 JPEGs), read without extracting it, or the folder
extracted from it (tiny-imagenet-200/).

Classes are the 200 WordNet ids of wnids.txt in sorted order (as an ImageFolder would
number them). The test split has no public labels, so the labelled val split (10,000
images, labels in val/val_annotations.txt) serves as the test set.
"""

from __future__ import annotations

import io as _io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from mimetic.data.core import Arrays, CorruptFile
from mimetic.data.fetch import Extracted, Source, config_key

ROOT = "tiny-imagenet-200"
# MD5 and size (248,100,043 bytes) as recorded by the many loaders of this archive.
SOURCES = {"tiny_imagenet": [Source("http://cs231n.stanford.edu/tiny-imagenet-200.zip", "tiny-imagenet-200.zip",
                                    "90528d7ca1a48142e341f4ef8d21d0de")]}
# No checksums are published for the extracted files: the folder is checked by its structure
# (wnids.txt, one training folder per class, every val image listed) and every image must decode.
EXTRACTED = {"tiny_imagenet": Extracted(ROOT)}

Read = Callable[[str], bytes]  # the bytes of a file, by its path relative to tiny-imagenet-200/


def _stack(name: str, where: Path, read: Read, items: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    # Filled in place: one copy of the 1.2 GB training set in memory, not a list plus a stack.
    x = np.empty((len(items), 3, 64, 64), dtype=np.uint8)
    for i, (file, _) in enumerate(items):
        try:
            # Some images are greyscale: convert so every image is (64, 64, 3).
            with Image.open(_io.BytesIO(read(file))) as img:
                x[i] = np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
        except (OSError, KeyError, ValueError) as e:
            raise CorruptFile(f"{name}: cannot read {where}/{file} as a 64x64 image ({e!r}). {_fix(name)}") from e
    return x, np.array([y for _, y in items], dtype=np.int64)


def _fix(name: str) -> str:
    return (f"It was left untouched: replace the copy with an intact one (e.g. extract {SOURCES[name][0].filename} "
            f"anew), or set the config key {config_key(name)} to a folder that holds one.")


def _read(name: str, where: Path, read: Read, train_files: list[str]) -> Arrays:
    """Both splits from `read` (wnids.txt, val annotations, images) and the training images' paths."""
    wnids = sorted(read("wnids.txt").decode().split())
    label = {w: i for i, w in enumerate(wnids)}
    train = sorted((f, label[f.split("/")[1]]) for f in train_files)  # train/<wnid>/images/<file>.JPEG
    empty = sorted(set(wnids) - {f.split("/")[1] for f, _ in train})
    if empty:
        raise CorruptFile(f"{name}: {where} has no training images for {len(empty)} of its {len(wnids)} classes "
                          f"(e.g. {where}/train/{empty[0]}/images/); the copy is incomplete. {_fix(name)}")
    # val_annotations.txt: file name, wnid, then a bounding box, tab-separated.
    lines = read("val/val_annotations.txt").decode().splitlines()
    val = [(f"val/images/{f}", label[w]) for f, w in (line.split("\t")[:2] for line in lines if line.strip())]
    return Arrays(*_stack(name, where, read, train), *_stack(name, where, read, val), classes=wnids)


def read(name: str, files: list[Path]) -> Arrays:
    """Train (500 per class) and val (50 per class) images from the verified zip."""
    (archive,) = files
    try:
        with zipfile.ZipFile(archive) as zf:
            train = [m[len(ROOT) + 1:] for m in zf.namelist()
                     if m.startswith(f"{ROOT}/train/") and m.endswith(".JPEG")]
            return _read(name, archive / ROOT, lambda f: zf.read(f"{ROOT}/{f}"), train)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as e:
        raise CorruptFile(f"{name}: cannot read {archive} as the Tiny-ImageNet zip ({e!r})") from e


def read_extracted(name: str, folder: Path) -> Arrays:
    """The same arrays from the extracted folder (<root>/tiny-imagenet-200)."""
    train = [p.relative_to(folder).as_posix() for p in folder.glob("train/*/images/*.JPEG")]
    try:
        return _read(name, folder, lambda f: (folder / f).read_bytes(), train)
    except (KeyError, OSError, ValueError) as e:
        raise CorruptFile(f"{name}: cannot read {folder} as the extracted Tiny-ImageNet folder ({e!r}). "
                          f"{_fix(name)}") from e
