"""Datasets: the data stage (download, verify, convert to uint8 arrays) and loading.

In-memory datasets (everything but ImageNet) load as `ImageData` through `load_dataset`;
ImageNet is read from its folder by worker processes (`mimetic.data.imagenet`).
"""

from mimetic.data import builtin as _builtin  # noqa: F401  (registers digits, synthetic)
from mimetic.data.core import (DATA_DIR, DATASETS, CorruptFile, DatasetError, DatasetUnavailable, ImageData,
                               load_dataset, register)
from mimetic.data.prepare import PREPARED, load_prepared, prepare

__all__ = ["DATA_DIR", "DATASETS", "PREPARED", "CorruptFile", "DatasetError", "DatasetUnavailable", "ImageData",
           "load_dataset", "load_prepared", "prepare", "register"]
