"""Training: what a run computes (`recipe`, `models`), what its model sees (`augment`, `inputs`,
`stream` for ImageNet, `prefetch`), the loop (`loop`) and its checkpoints (`checkpoint`), and
starting a run on its devices (`launch`, `distributed`, `gpu`): recipe -> inputs -> loop -> run
folder.

`TrainConfig` and the model registry need no torch (the workflow's config check reads them);
the rest loads torch on first use.
"""

from typing import Any

from mimetic.train.models import MODELS, register_model
from mimetic.train.recipe import TrainConfig

__all__ = ["MODELS", "TrainConfig", "build_model", "make_inputs", "register_model", "train"]

_LAZY = {"train": "loop", "build_model": "models", "make_inputs": "inputs"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"mimetic.train.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'mimetic.train' has no attribute {name!r}")
