"""Fashion-MNIST (Zalando Research, MIT licence): 60,000 training and 10,000 test images, grey,
28x28, 10 classes, as the four gzipped idx files upstream publishes.

URLs, file names, MD5s and class names are torchvision's (torchvision.datasets.FashionMNIST:
mirrors, resources, classes; a test keeps them equal); they are written out here so that docs
and messages can quote them. `content_md5` is the MD5 of each file once gunzipped: Debian's
package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) holds upstream's deflate
streams under a rewritten gzip header (no file name, another time stamp), so its .gz MD5s
differ from the published ones while the idx bytes are identical (docs/datasets.md).

The idx files are parsed here with numpy (no torchvision reader): a big-endian header of two
zero bytes, the type code 0x08 (unsigned byte), the number of dimensions, then one uint32 per
dimension, then the data.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from mimetic.data.core import Arrays, CorruptFile
from mimetic.data.fetch import Source

URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"  # Zalando's own host
# file -> (MD5 of the .gz as published, MD5 of its gunzipped idx bytes)
FILES = {
    "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
    "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
    "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
}
SOURCES = {"fashion_mnist": [Source(URL + name, name, md5, content_md5=content)
                             for name, (md5, content) in FILES.items()]}
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_UBYTE = 0x08
_ERRORS = (OSError, EOFError, zlib.error, ValueError)  # gzip.BadGzipFile is an OSError


def read_idx(path: Path, dims: int) -> np.ndarray:
    """The uint8 array of a gzipped idx file with `dims` dimensions; CorruptFile naming `path` otherwise."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except _ERRORS as e:
        raise CorruptFile(f"fashion_mnist: cannot read {path} as a gzip file ({e!r}); replace it with an intact "
                          "copy") from e
    header = 4 + 4 * dims
    magic = bytes([0, 0, _UBYTE, dims])
    if raw[:4] != magic or len(raw) < header:
        raise CorruptFile(f"fashion_mnist: {path} is no idx file of {dims} dimensions of unsigned bytes (magic "
                          f"{raw[:4].hex()}, expected {magic.hex()}); replace it with an intact copy")
    shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", dims, offset=4))
    if len(raw) - header != int(np.prod(shape)):
        raise CorruptFile(f"fashion_mnist: {path} holds {len(raw) - header} data bytes, but its header says "
                          f"{shape}; replace it with an intact copy")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _split(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(images, 3), read_idx(labels, 1)
    if x.shape[1:] != (28, 28) or len(x) != len(y):
        raise CorruptFile(f"fashion_mnist: {images} holds {x.shape} images and {labels} {len(y)} labels, expected as "
                          "many 28x28 images as labels; replace them with Fashion-MNIST's files of one split")
    if len(y) and y.max() >= len(CLASSES):
        raise CorruptFile(f"fashion_mnist: {labels} holds label {y.max()}, but there are {len(CLASSES)} classes; "
                          "replace it with an intact copy")
    # (N, 28, 28) -> (N, 1, 28, 28): one grey channel, the layout of every prepared dataset
    return np.ascontiguousarray(x[:, None]), y.astype(np.int64)


def read(name: str, files: list[Path]) -> Arrays:
    """The train (60,000) and test (10,000) images from the four verified idx.gz files, in FILES' order."""
    train_x, train_y, test_x, test_y = files
    return Arrays(*_split(train_x, train_y), *_split(test_x, test_y), classes=list(CLASSES))
