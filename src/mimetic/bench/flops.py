"""Work per training step, counted, not estimated: FLOPs of the model (FlopCounterMode) and the
copies and kernels a step asks of its device (DeviceWork).

FLOPs: what is counted is the model's matrix work (matrix products, the patch embedding's convolution,
attention's two products) in one forward and one backward pass, the convention of "model
FLOPs": an achieved TFLOP/s figure divides these by the time a training step takes. Element-wise
work (norms, GELU, softmax, the optimizer) is not counted, and neither is the recomputation that
flash attention does in its backward pass: the count is the same whichever attention kernel
runs, because it is taken with attention as two explicit products (see `training_flops`).
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
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


class DeviceWork(TorchDispatchMode):
    """Counts what ran on a device: copies from the host and kernels (every non-view operator with
    an output there). Run the code with its device faked as `meta`: nothing is computed, any host
    synchronization fails (a meta tensor has no value to read), and the counts are what a GPU
    would be asked to do. Counts this thread only."""

    _ALLOCATIONS = ("aten::empty", "aten::empty_strided")

    def __init__(self, device: str = "meta"):
        super().__init__()
        self.device, self.copies, self.kernels = device, 0, 0
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outputs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.device.type == self.device]
        if outputs:
            inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
            if func._schema.name in ("aten::_to_copy", "aten::copy_") and any(t.device.type == "cpu" for t in inputs):
                self.copies += 1
            elif not func.is_view and func._schema.name not in self._ALLOCATIONS:
                self.kernels += 1
                self.ops[func._schema.name] += 1
        return out
