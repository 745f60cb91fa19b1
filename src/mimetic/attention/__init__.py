"""The paper's object: any model's attention. Weight access in the x @ W convention (`weights`),
the initializations (`init`), the QK and VO products and their metrics (`structure`), and
pretrained models' weights (`pretrained`). Imports neither mimetic.train nor mimetic.report.

The registry of inits needs no torch (the workflow's config check reads it); the rest loads
torch on first use.
"""

from typing import Any

from mimetic.attention.init import INITS, Init, Param, check_params, init_params, register_init

__all__ = ["INITS", "AttentionLayer", "AttentionWeights", "Init", "Param", "apply_init", "attention_layers",
           "attention_products", "changed_parts", "check_params", "init_params", "layer_statistics", "register_init",
           "structure_metrics", "tensor_parts"]

_LAZY = {"apply_init": "init", "changed_parts": "init", "tensor_parts": "init",
         "AttentionLayer": "weights", "AttentionWeights": "weights",
         "attention_layers": "weights", "attention_products": "structure", "layer_statistics": "structure",
         "structure_metrics": "structure"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"mimetic.attention.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'mimetic.attention' has no attribute {name!r}")
