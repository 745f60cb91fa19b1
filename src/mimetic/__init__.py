"""Mimetic initialization of self-attention layers: a reproducible benchmark pipeline."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["INITS", "apply_init", "attention_products", "structure_metrics", "__version__"]


def __getattr__(name: str) -> Any:
    # On first use: `import mimetic.<module>` (a job, the workflow's config check) imports this
    # package first, and most of them need no torch.
    if name in ("INITS", "apply_init"):
        from mimetic.attention import init

        return getattr(init, name)
    if name in ("attention_products", "structure_metrics"):
        from mimetic.attention import structure

        return getattr(structure, name)
    raise AttributeError(f"module 'mimetic' has no attribute {name!r}")
