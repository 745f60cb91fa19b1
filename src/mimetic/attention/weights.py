"""Uniform access to the attention weights of supported models.

Everything here speaks the *math* convention of the paper: a row vector x maps to
x @ W. PyTorch's nn.Linear stores weight = W^T, so each adapter transposes exactly once,
here, and nowhere else. Inside W_q and W_k the columns of head h are h*k .. (h+1)*k, the
layout both timm and nn.MultiheadAttention use when they split heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class AttentionWeights:
    """One layer's projections, each d x d, in the x @ W convention."""

    q: Tensor
    k: Tensor
    v: Tensor
    proj: Tensor
    num_heads: int

    @property
    def dim(self) -> int:
        return self.q.shape[0]

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


class AttentionLayer:
    """A handle on one attention module: read and write its projections."""

    def __init__(self, name: str, module: nn.Module, qkv: Tensor, proj: Tensor, num_heads: int):
        self.name = name
        self.module = module
        self._qkv = qkv  # (3d, d) parameter, rows [q; k; v]
        self._proj = proj  # (d, d) parameter
        self.num_heads = num_heads
        self.dim = proj.shape[0]
        if self.dim % num_heads:
            raise ValueError(
                f"attention layer {name!r}: width {self.dim} is not divisible by "
                f"num_heads={num_heads}; mimetic init needs equal head widths"
            )
        self.head_dim = self.dim // num_heads

    @property
    def qkv_param(self) -> Tensor:
        """The fused (3d, d) parameter, nn.Linear layout."""
        return self._qkv

    @property
    def proj_param(self) -> Tensor:
        return self._proj

    def read(self) -> AttentionWeights:
        d = self.dim
        w = self._qkv.detach()
        return AttentionWeights(
            q=w[:d].T, k=w[d : 2 * d].T, v=w[2 * d :].T, proj=self._proj.detach().T, num_heads=self.num_heads
        )

    @torch.no_grad()
    def write(self, *, q: Tensor | None = None, k: Tensor | None = None, v: Tensor | None = None,
              proj: Tensor | None = None) -> None:
        """Overwrite the given projections (x @ W convention), keeping dtype and device."""
        d = self.dim
        for rows, w in ((slice(0, d), q), (slice(d, 2 * d), k), (slice(2 * d, 3 * d), v)):
            if w is not None:
                self._qkv[rows].copy_(w.T)
        if proj is not None:
            self._proj.copy_(proj.T)


def _timm_layer(name: str, m: nn.Module) -> AttentionLayer | None:
    # timm's ViT-family Attention: fused qkv Linear (3d x d), proj Linear, num_heads.
    qkv, proj = getattr(m, "qkv", None), getattr(m, "proj", None)
    if not (isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and hasattr(m, "num_heads")):
        return None
    d = proj.out_features
    if qkv.weight.shape != (3 * d, d) or proj.weight.shape != (d, d):
        raise ValueError(
            f"attention layer {name!r} ({type(m).__name__}) has qkv {tuple(qkv.weight.shape)} and proj "
            f"{tuple(proj.weight.shape)}; only square self-attention (qkv 3d x d, proj d x d) is supported"
        )
    return AttentionLayer(name, m, qkv.weight, proj.weight, int(m.num_heads))


def _torch_mha_layer(name: str, m: nn.Module) -> AttentionLayer | None:
    if not isinstance(m, nn.MultiheadAttention):
        return None
    if not m._qkv_same_embed_dim:
        raise ValueError(
            f"attention layer {name!r}: nn.MultiheadAttention with kdim/vdim != embed_dim is "
            "cross-attention; only self-attention (kdim = vdim = embed_dim) is supported"
        )
    return AttentionLayer(name, m, m.in_proj_weight, m.out_proj.weight, m.num_heads)


_ADAPTERS = (_timm_layer, _torch_mha_layer)
SUPPORTED = "timm Attention (fused qkv + proj, e.g. VisionTransformer) and torch.nn.MultiheadAttention"


def attention_layers(model: nn.Module) -> list[AttentionLayer]:
    """All supported self-attention layers of `model`, in module order (= depth order)."""
    layers = []
    for name, m in model.named_modules():
        for adapter in _ADAPTERS:
            layer = adapter(name, m)
            if layer is not None:
                layers.append(layer)
                break
    if not layers:
        raise ValueError(f"{type(model).__name__} has no supported attention layer; supported: {SUPPORTED}")
    return layers
