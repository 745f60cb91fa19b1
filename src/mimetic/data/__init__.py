"""Datasets: the data stage (download, verify, convert to uint8 arrays) and loading.

In-memory datasets (everything but ImageNet) load as `ImageData` through `load_dataset`;
ImageNet is streamed from its folder (`mimetic.data.imagenet` indexes it, `mimetic.train.stream` reads it).

The data stage's modules (`prepare`, and through it torchvision) are imported on first use:
planning a workflow and the analysis commands import this package without them.
"""

import importlib
from typing import Any

from mimetic.data import builtin as _builtin  # noqa: F401  (registers digits, synthetic)
from mimetic.data.core import (DATA_DIR, DATASETS, PREPARED_NAMES, CorruptFile, DatasetError, DatasetUnavailable,
                               ImageData, data_fingerprint, load_dataset, register_dataset, stage_args,
                               stage_files)


def _load_prepared(name: str):
    def load(root):
        from mimetic.data.stage import load_prepared

        return load_prepared(name, root)

    return load


for _name in PREPARED_NAMES:
    register_dataset(_name)(_load_prepared(_name))


def __getattr__(name: str) -> Any:
    # Not `prepare` (the function): its name is its module's, which the import system binds here.
    if name in ("PREPARED", "load_prepared"):
        return getattr(importlib.import_module("mimetic.data.stage"), name)
    raise AttributeError(f"module 'mimetic.data' has no attribute {name!r}")


__all__ = ["DATA_DIR", "DATASETS", "PREPARED", "PREPARED_NAMES", "CorruptFile", "DatasetError", "DatasetUnavailable",
           "ImageData", "data_fingerprint", "load_dataset", "load_prepared", "register_dataset", "stage_args",
           "stage_files"]
