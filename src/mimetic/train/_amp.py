"""Mixed precision, one rule for both trainers (mimetic.train.loop and mimetic.train.lm)."""

from __future__ import annotations

import contextlib

import torch


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; elsewhere fp32 (the CPU's bf16 is slow; `meta` has no autocast)."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
