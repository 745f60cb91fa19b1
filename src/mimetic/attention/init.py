"""Attention initializations (a config arm's `init`): the model's own, mimetic, ablations.

Mimetic initialization (Trockman & Kolter, ICML 2023), per layer of width d with H heads of
width k = d / H and Z a d x d matrix of i.i.d. entries with variance 1/d:

* every head h, with its own Z1:  W_q^h (W_k^h)^T = rank-k truncation of alpha1 * Z1 + beta1 * I
* once per layer, full rank:     W_v W_proj      = alpha2 * Z2 - beta2 * I

Each target A is split by its SVD, A = U S V^T, into left = U S^1/2 and right = S^1/2 V^T.
Only attention projection weights change; biases and every other layer keep the model's own
initialization, so two arms (config labels, each an init with its parameters) compared at the
same seed differ in nothing else.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from mimetic.registry import Registry

if TYPE_CHECKING:  # torch on first use: the workflow's config check reads the registry only
    import torch
    from torch import Tensor, nn

    from mimetic.attention.weights import AttentionLayer

NOISE = ("normal", "uniform")

InitFn = Callable[..., None]
# An init is called as fn(layers, generator, **params); its keyword defaults are its parameters
# and their defaults.
INITS: Registry[InitFn] = Registry("init")
register_init = INITS.register


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


def _init_qk(layer: AttentionLayer, gen: torch.Generator, alpha: float, beta: float, dist: str) -> None:
    import torch

    w = layer.read()
    q, k = w.q.to(torch.float64).clone(), w.k.to(torch.float64).clone()
    hk = layer.head_dim
    for h in range(layer.num_heads):  # fresh noise per head
        cols = slice(h * hk, (h + 1) * hk)
        q[:, cols], k[:, cols] = qk_factors(qk_target(layer.dim, alpha, beta, gen, dist), hk)
    layer.write(q=q, k=k)


def _init_vo(layer: AttentionLayer, gen: torch.Generator, alpha: float, beta: float, dist: str) -> None:
    v, proj = split(vo_target(layer.dim, alpha, beta, gen, dist))
    layer.write(v=v, proj=proj)


@register_init("default")
def default(layers: list[AttentionLayer], gen: torch.Generator) -> None:
    """The model's own initialization, untouched."""


# Draw order is part of the contract (same seed -> same weights): layer by layer, the Q/K
# noise of heads 0..H-1, then the V/Proj noise.
@register_init("mimetic")
def mimetic(layers: list[AttentionLayer], gen: torch.Generator, alpha1: float = 0.7, beta1: float = 0.7,
            alpha2: float = 0.4, beta2: float = 0.4, dist: str = "normal") -> None:
    """Both products: W_q W_k^T ~ alpha1 Z + beta1 I per head, W_v W_proj ~ alpha2 Z - beta2 I."""
    for layer in layers:
        _init_qk(layer, gen, alpha1, beta1, dist)
        _init_vo(layer, gen, alpha2, beta2, dist)


@register_init("mimetic-qk")
def mimetic_qk(layers: list[AttentionLayer], gen: torch.Generator, alpha1: float = 0.7, beta1: float = 0.7,
               dist: str = "normal") -> None:
    """Ablation: only W_q W_k^T is mimetic; W_v and W_proj keep the model's own init."""
    for layer in layers:
        _init_qk(layer, gen, alpha1, beta1, dist)


@register_init("mimetic-vo")
def mimetic_vo(layers: list[AttentionLayer], gen: torch.Generator, alpha2: float = 0.4, beta2: float = 0.4,
               dist: str = "normal") -> None:
    """Ablation: only W_v W_proj is mimetic; W_q and W_k keep the model's own init."""
    for layer in layers:
        _init_vo(layer, gen, alpha2, beta2, dist)


def init_params(init: str) -> dict[str, object]:
    """The parameters `init` takes, with their defaults."""
    sig = inspect.signature(INITS.lookup(init))
    return {n: p.default for n, p in list(sig.parameters.items())[2:]}


def check_params(init: str, params: dict[str, object]) -> dict[str, object]:
    """`params` completed with the init's defaults; ValueError naming any bad key or value."""
    valid = init_params(init)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"init {init!r} takes no parameter {unknown}; its parameters are {sorted(valid) or 'none'}")
    full = {**valid, **params}
    for key, value in full.items():
        if key == "dist":
            if value not in NOISE:
                raise ValueError(f"init {init!r}: dist={value!r}; choose one of {NOISE}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"init {init!r}: {key}={value!r} must be a finite number >= 0")
    return full


def apply_init(model: nn.Module, init: str, *, seed: int | None = None, **params: object) -> nn.Module:
    """Initialize the attention layers of `model` in place with `init`; returns `model`.

    seed: the attention noise comes from its own generator seeded with this, so the global
    torch RNG (data order, dropout) stays the same across inits. None draws the generator's
    seed from the global RNG.
    """
    import torch

    from mimetic.attention.weights import attention_layers

    full = check_params(init, params)
    layers = attention_layers(model)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    gen = torch.Generator().manual_seed(seed)
    INITS[init](layers, gen, **full)
    return model
