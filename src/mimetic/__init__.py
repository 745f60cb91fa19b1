"""Mimetic initialization of self-attention layers: a reproducible benchmark pipeline."""

from mimetic.init import INITS, apply_init
from mimetic.structure import attention_products, structure_metrics

__version__ = "0.1.0"
__all__ = ["INITS", "apply_init", "attention_products", "structure_metrics", "__version__"]
