"""SVHN (cropped digits): the official train_32x32.mat and test_32x32.mat (MATLAB files).

URLs, file names and MD5s are torchvision's (torchvision.datasets.SVHN). The `extra` split
(531,131 images) is not used: the paper-style recipes train on `train` only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from torchvision.datasets import SVHN

from mimetic.data.core import Arrays, CorruptFile
from mimetic.data.fetch import Source

SOURCES = {"svhn": [Source(*SVHN.split_list[split]) for split in ("train", "test")]}


def _split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        mat = scipy.io.loadmat(path)
        x, y = mat["X"], mat["y"]
    except (ValueError, OSError, KeyError, TypeError) as e:
        raise CorruptFile(f"svhn: cannot read {path} as an SVHN .mat file ({e!r})") from e
    # X is (32, 32, 3, N); labels are 1..10 with 10 meaning the digit 0.
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1), dtype=np.uint8)
    return images, (y.reshape(-1).astype(np.int64) % 10)


def read(name: str, files: list[Path]) -> Arrays:
    """The train (73,257) and test (26,032) images from the two verified .mat files."""
    train, test = (_split(p) for p in files)
    return Arrays(*train, *test, classes=[str(d) for d in range(10)])
