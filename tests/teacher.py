"""A planted weight-selection teacher: timm's ViT-Tiny/16 architecture with every tensor random
(its own init leaves norms at one and biases at zero, which a student's init would equal)."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

TEACHER = "vit_tiny_patch16_224"  # 192 wide, 12 blocks, 3 heads, MLP 768, 14 x 14 patches of 16, class token


def planted_teacher(path: Path) -> dict[str, torch.Tensor]:
    """Write the teacher's state dict to `path` (safetensors); return it."""
    gen = torch.Generator().manual_seed(0)
    shapes = {k: v.shape for k, v in timm.create_model(TEACHER, pretrained=False).state_dict().items()}
    state = {k: torch.randn(shape, generator=gen) for k, shape in shapes.items()}
    save_file(state, str(path))
    return state
