"""Mimetic initialization (Trockman & Kolter, ICML 2023), its ablations and controls.

Per layer of width d with H heads of width k = d / H and Z a d x d matrix of i.i.d. entries with
variance 1/d:

* every head h, with its own Z1:  W_q^h (W_k^h)^T = rank-k truncation of alpha1 * Z1 + beta1 * I
* once per layer, full rank:     W_v W_proj      = alpha2 * Z2 - beta2 * I

Each target A is split by its SVD, A = U S V^T, into left = U S^1/2 and right = S^1/2 V^T. Draw
order is part of the contract (same seed -> same weights): layer by layer, the Q/K noise of
heads 0..H-1, then the V/Proj noise.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mimetic.attention._spec import NOISE, Param, register_init

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from mimetic.attention.weights import AttentionLayer

_MIMETIC = "Trockman & Kolter, ICML 2023 (arXiv 2305.09828)"
# The values every public implementation uses; the paper's own statement of them is unverified.
ALPHA1, BETA1, ALPHA2, BETA2 = 0.7, 0.7, 0.4, 0.4
# A negative beta flips its product's sign: the signs measured in another pretrained family
# (GPT-2's V/Proj turns positive with depth) are one config line, `params: {beta2: -0.4}`.
QK = {"alpha1": Param(ALPHA1, "Q/K noise scale", minimum=0),
      "beta1": Param(BETA1, "Q/K identity scale (negative: -I)")}
VO = {"alpha2": Param(ALPHA2, "V/Proj noise scale", minimum=0),
      "beta2": Param(BETA2, "V/Proj identity scale, subtracted (negative: +I)")}
DIST = {"dist": Param("normal", "the noise Z: normal, or uniform with the same variance 1/d", choices=NOISE)}


def noise(d: int, generator: torch.Generator, dist: str = "normal") -> Tensor:
    """A d x d float64 matrix of i.i.d. entries with mean 0 and variance 1/d."""
    import torch

    if dist == "normal":
        return torch.randn(d, d, generator=generator, dtype=torch.float64) / math.sqrt(d)
    if dist == "uniform":  # U(-a, a) has variance a^2 / 3
        a = math.sqrt(3.0 / d)
        return (torch.rand(d, d, generator=generator, dtype=torch.float64) * 2 - 1) * a
    raise ValueError(f"unknown noise distribution {dist!r}; choose one of {NOISE}")


def split(a: Tensor) -> tuple[Tensor, Tensor]:
    """left, right with left @ right == a, balanced through the SVD."""
    import torch

    u, s, vh = torch.linalg.svd(a)
    root = s.sqrt()
    return u * root, root[:, None] * vh


def qk_target(d: int, alpha: float, beta: float, generator: torch.Generator, dist: str = "normal") -> Tensor:
    import torch

    return alpha * noise(d, generator, dist) + beta * torch.eye(d, dtype=torch.float64)


def vo_target(d: int, alpha: float, beta: float, generator: torch.Generator, dist: str = "normal") -> Tensor:
    import torch

    return alpha * noise(d, generator, dist) - beta * torch.eye(d, dtype=torch.float64)


def qk_factors(target: Tensor, head_dim: int) -> tuple[Tensor, Tensor]:
    """W_q^h, W_k^h (each d x k) whose product W_q^h W_k^h^T is the rank-k truncation of target."""
    left, right = split(target)
    return left[:, :head_dim], right[:head_dim].T


def layers_of(model: nn.Module) -> list[AttentionLayer]:
    from mimetic.attention.weights import attention_layers

    return attention_layers(model)


def init_qk(layer: AttentionLayer, gen: torch.Generator, alpha: float, beta: float, dist: str) -> None:
    import torch

    w = layer.read()
    q, k = w.q.to(torch.float64).clone(), w.k.to(torch.float64).clone()
    hk = layer.head_dim
    for h in range(layer.num_heads):  # fresh noise per head
        cols = slice(h * hk, (h + 1) * hk)
        q[:, cols], k[:, cols] = qk_factors(qk_target(layer.dim, alpha, beta, gen, dist), hk)
    layer.write(q=q, k=k)


def init_vo(layer: AttentionLayer, gen: torch.Generator, alpha: float, beta: float, dist: str) -> None:
    v, proj = split(vo_target(layer.dim, alpha, beta, gen, dist))
    layer.write(v=v, proj=proj)


@register_init("default", touches=())
def default(model: nn.Module, gen: torch.Generator) -> None:
    """The model's own initialization, untouched."""


@register_init("mimetic", touches=("q", "k", "v", "proj"), params={**QK, **VO, **DIST}, source=_MIMETIC)
def mimetic(model: nn.Module, gen: torch.Generator, alpha1: float, beta1: float, alpha2: float, beta2: float,
            dist: str) -> None:
    """Both products: W_q W_k^T ~ alpha1 Z + beta1 I per head, W_v W_proj ~ alpha2 Z - beta2 I."""
    for layer in layers_of(model):
        init_qk(layer, gen, alpha1, beta1, dist)
        init_vo(layer, gen, alpha2, beta2, dist)


@register_init("mimetic-qk", touches=("q", "k"), params={**QK, **DIST}, source=_MIMETIC)
def mimetic_qk(model: nn.Module, gen: torch.Generator, alpha1: float, beta1: float, dist: str) -> None:
    """Ablation: only W_q W_k^T is mimetic; W_v and W_proj keep the model's own init."""
    for layer in layers_of(model):
        init_qk(layer, gen, alpha1, beta1, dist)


@register_init("mimetic-vo", touches=("v", "proj"), params={**VO, **DIST}, source=_MIMETIC)
def mimetic_vo(model: nn.Module, gen: torch.Generator, alpha2: float, beta2: float, dist: str) -> None:
    """Ablation: only W_v W_proj is mimetic; W_q and W_k keep the model's own init."""
    for layer in layers_of(model):
        init_vo(layer, gen, alpha2, beta2, dist)


# The controls: mimetic's structure without its noise (alpha = 0). The rank-k truncation of
# beta * I is not unique (every k-dimensional subspace is one), so each head takes its own
# coordinates: W_q^h = W_k^h = sqrt(beta) E_h, and the heads' products sum to beta * I exactly
# (a negative beta: W_k^h = -sqrt(|beta|) E_h, as mimetic's sign flip).
def identity_qk(layer: AttentionLayer, beta: float) -> None:
    import torch

    e = torch.eye(layer.dim, dtype=torch.float64) * math.sqrt(abs(beta))
    layer.write(q=e, k=math.copysign(1.0, beta) * e)


def identity_vo(layer: AttentionLayer, beta: float) -> None:
    import torch

    e = torch.eye(layer.dim, dtype=torch.float64) * math.sqrt(abs(beta))
    layer.write(v=e, proj=-math.copysign(1.0, beta) * e)


@register_init("identity", touches=("q", "k", "v", "proj"), params={"beta1": QK["beta1"], "beta2": VO["beta2"]},
               source="control: mimetic with alpha1 = alpha2 = 0")
def identity(model: nn.Module, gen: torch.Generator, beta1: float, beta2: float) -> None:
    """Control, no noise: W_q^h W_k^h^T = beta1 I on head h's own coordinates (the heads' sum is
    beta1 I), W_v W_proj = -beta2 I exactly."""
    for layer in layers_of(model):
        identity_qk(layer, beta1)
        identity_vo(layer, beta2)


@register_init("identity-qk", touches=("q", "k"), params={"beta1": QK["beta1"]},
               source="control: mimetic-qk with alpha1 = 0")
def identity_qk_only(model: nn.Module, gen: torch.Generator, beta1: float) -> None:
    """Control, no noise, Q/K only: W_q^h W_k^h^T = beta1 I on head h's own coordinates; W_v and
    W_proj keep the model's own init."""
    for layer in layers_of(model):
        identity_qk(layer, beta1)


# The MLP companion (Trockman & Kolter, arXiv 2602.07156): the first MLP layer's weights get a
# nonzero mean. The paper's value could not be read here. Default 0.02: the standard deviation of
# timm's ViT init of that layer (truncated normal, std 0.02), a mean as large as the spread, clearly
# away from zero without swamping it. A sweep is one config line per value (config/README.md).
MLP_MEAN = {"mlp_mean": Param(0.02, "mean added to every weight of each block's first MLP layer (fc1)",
                              minimum=-1.0, maximum=1.0)}


@register_init("mimetic-mlp", touches=("q", "k", "v", "proj", r"blocks\.\d+\.mlp\.fc1\.weight"),
               params={**QK, **VO, **DIST, **MLP_MEAN},
               source="Trockman & Kolter, Mimetic initialization of MLPs (arXiv 2602.07156), on top of mimetic",
               kinds=("vision",))
def mimetic_mlp(model: nn.Module, gen: torch.Generator, alpha1: float, beta1: float, alpha2: float, beta2: float,
                dist: str, mlp_mean: float) -> None:
    """Mimetic attention, and each block's first MLP layer (fc1) shifted to mean `mlp_mean`
    (its own init plus the constant): touches fc1's weights too."""
    import torch

    mimetic(model, gen, alpha1, beta1, alpha2, beta2, dist)
    fc1 = [m.mlp.fc1 for m in model.modules() if hasattr(m, "mlp") and hasattr(m.mlp, "fc1")]
    if not fc1:
        raise ValueError(f"init 'mimetic-mlp' needs blocks with an mlp.fc1 (timm ViT); {type(model).__name__} has none")
    with torch.no_grad():
        for layer in fc1:
            layer.weight.add_(mlp_mean)
