"""Training FLOPs per image of a model: counted, not estimated, with torch's FlopCounterMode.

What is counted is the model's matrix work (matrix products, the patch embedding's convolution,
attention's two products) in one forward and one backward pass, the convention of "model
FLOPs": an achieved TFLOP/s figure divides these by the time a training step takes. Element-wise
work (norms, GELU, softmax, the optimizer) is not counted, and neither is the recomputation that
flash attention does in its backward pass: the count is the same whichever attention kernel
runs, because it is taken with attention as two explicit products (see `training_flops`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def set_fused_attention(model: nn.Module, fused: bool) -> int:
    """Switch timm's attention modules between F.scaled_dot_product_attention (fused: flash or
    memory-efficient kernels where the device has them) and explicit q k^T / softmax / v products.
    Returns how many modules were switched (0: the model has no timm attention)."""
    switched = 0
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = fused
            switched += 1
    return switched


def training_flops(model: nn.Module, image_shape: tuple[int, int, int], *, batch: int = 2) -> int:
    """FLOPs of one training image (forward + backward of a cross-entropy loss).

    Counted on a CPU copy of `model` (the model itself is left untouched) with explicit attention
    products: FlopCounterMode has no formula for the CPU's fused attention kernel, and the
    explicit products count the same work on every device. A multiply-add is 2 FLOPs. The
    input image needs no gradient, so the patch embedding's backward pass is its weight
    gradient only, as in training.
    """
    net = copy.deepcopy(model).to("cpu", torch.float32).train()
    set_fused_attention(net, False)
    x = torch.randn(batch, *image_shape)
    with FlopCounterMode(display=False) as counter:
        logits = net(x)
        F.cross_entropy(logits, torch.zeros(batch, dtype=torch.long)).backward()
    total = counter.get_total_flops()
    if total % batch:
        raise AssertionError(f"{total} FLOPs do not divide over a batch of {batch}: the count is not per image")
    return total // batch
