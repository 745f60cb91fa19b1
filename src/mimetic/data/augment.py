"""Per-batch augmentation on the training device: whole batches, no per-image Python loop.

Every random choice comes from an explicit torch.Generator, so a batch's augmentation is
fixed by (seed, epoch, step) and a resumed run sees exactly the same inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _rand(shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> Tensor:
    # Draw on the CPU generator, then move: identical numbers on every device.
    return torch.rand(shape, generator=gen).to(device)


def random_crop(x: Tensor, pad: int, gen: torch.Generator) -> Tensor:
    """Zero-pad by `pad` on every side, then crop each image back at a random offset."""
    if pad == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    off = (_rand((n, 2), gen, x.device) * (2 * pad + 1)).long()  # offsets in 0 .. 2*pad
    rows = (off[:, 0, None] + torch.arange(h, device=x.device))  # (n, h)
    cols = (off[:, 1, None] + torch.arange(w, device=x.device))  # (n, w)
    idx = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indexing over (n, h, w) then put channels back in front.
    return padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_flip(x: Tensor, gen: torch.Generator) -> Tensor:
    """Flip each image left-right with probability 1/2."""
    mask = _rand((x.shape[0],), gen, x.device) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(-1), x)
