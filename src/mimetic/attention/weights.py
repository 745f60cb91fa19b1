"""Uniform access to the attention weights of supported models.

Everything here speaks the *math* convention of the paper: a row vector x maps to
x @ W. PyTorch's nn.Linear stores weight = W^T, so each adapter transposes exactly once,
here, and nowhere else. GPT-2's Conv1D stores W itself ((d, 3d) for the fused c_attn, columns
[q | k | v]): its adapter hands the layer the transposed views, which are in nn.Linear's layout
and write through to the parameters. Inside W_q and W_k the columns of head h are
h*k .. (h+1)*k, the layout timm, nn.MultiheadAttention and GPT-2 all use when they split heads.
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

    def __init__(self, name: str, module: nn.Module, qkv: Tensor, proj: Tensor, num_heads: int,
                 owners: tuple[Tensor, Tensor] | None = None):
        self.name = name
        self.module = module
        self._qkv = qkv  # (3d, d), rows [q; k; v]: the parameter, or a view of it
        self._proj = proj  # (d, d)
        # The parameters qkv and proj are (views of): what the layer's parts replace in a model's tensors.
        self.owners = owners or (qkv, proj)
        self.num_heads = num_heads
        self.dim = proj.shape[0]
        if self.dim % num_heads:
            raise ValueError(
                f"attention layer {name!r}: width {self.dim} is not divisible by "
                f"num_heads={num_heads}; mimetic init needs equal head widths"
            )
        self.head_dim = self.dim // num_heads

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


def _gpt2_layer(name: str, m: nn.Module) -> AttentionLayer | None:
    # transformers' GPT2Attention: Conv1D c_attn (d, 3d) and c_proj (d, d), y = x @ W + b.
    c_attn, c_proj = getattr(m, "c_attn", None), getattr(m, "c_proj", None)
    if type(c_attn).__name__ != "Conv1D" or type(c_proj).__name__ != "Conv1D" or not hasattr(m, "num_heads"):
        return None
    if getattr(m, "is_cross_attention", False):
        raise ValueError(f"attention layer {name!r}: GPT-2 cross-attention; only self-attention is supported")
    d = c_proj.weight.shape[1]
    if c_attn.weight.shape != (d, 3 * d) or c_proj.weight.shape != (d, d):
        raise ValueError(f"attention layer {name!r}: c_attn {tuple(c_attn.weight.shape)}, c_proj "
                         f"{tuple(c_proj.weight.shape)}; GPT-2's layout is c_attn (d, 3d) and c_proj (d, d)")
    return AttentionLayer(name, m, c_attn.weight.T, c_proj.weight.T, int(m.num_heads),
                          owners=(c_attn.weight, c_proj.weight))


_ADAPTERS = (_timm_layer, _torch_mha_layer, _gpt2_layer)
SUPPORTED = ("timm Attention (fused qkv + proj, e.g. VisionTransformer), torch.nn.MultiheadAttention and "
             "transformers' GPT2Attention (Conv1D c_attn + c_proj)")


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
