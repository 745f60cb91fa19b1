"""Mimetic's successors, each as published (or, where constants are not public, as parameters).

* impulse: Zheng et al., NeurIPS 2025 (arXiv 2505.19985), code osiriszjq/structured_initialization,
  `timm/models/vision_transformer.py` (`impulse_init`, `post_init_weights`). Followed line by line;
  where the issue's summary and the code differ, the code wins (the noise is added off the
  impulses only; V/Proj noise is uniform).
* conditioned: Saratchandran & Lucey, ICLR 2026 (OpenReview cKNOCYPo2W), no public code.
* vo-only: modded-nanogpt PR #214, the one public language-model result with a diff.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mimetic.attention._mimetic import VO, init_vo, layers_of
from mimetic.attention._spec import NOISE, Param, register_init

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

# The 3x3 window's cells in the order heads take them: centre, up, right, left, down, then the
# diagonals (cell i is the offset (i // 3 - 1, i % 3 - 1) in (row, column)).
IMPULSE_ORDER = (4, 1, 5, 3, 7, 0, 2, 6, 8)
IMPULSE_PEAK, IMPULSE_NOISE, IMPULSE_NOISE_STD = 1000.0, 3.0, 0.6


def impulse_offset(head: int) -> tuple[int, int]:
    """Head `head`'s (row, column) offset: the key token its query attends to, relative to itself."""
    cell = IMPULSE_ORDER[head % len(IMPULSE_ORDER)]
    return cell // 3 - 1, cell % 3 - 1


def shift_matrix(grid: tuple[int, int], offset: tuple[int, int]) -> Tensor:
    """N x N (N = rows x columns tokens, row-major): 1 where query (r, c) meets key (r + m, c + n)."""
    import torch

    rows, cols = grid
    m, n = offset
    t = torch.zeros(rows * cols, rows * cols, dtype=torch.float64)
    for r in range(max(0, -m), rows - max(0, m)):
        for c in range(max(0, -n), cols - max(0, n)):
            t[r * cols + c, (r + m) * cols + c + n] = 1.0
    return t


def truncated_normal(shape: tuple[int, ...], std: float, gen: torch.Generator) -> Tensor:
    """timm's trunc_normal_(mean 0, std, cut at -2 and 2), drawn from `gen` (timm's takes the
    global RNG): a uniform draw between the cut points' CDF values, mapped back by erfinv."""
    import torch

    def cdf(x: float) -> float:
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    lo, hi = cdf(-2.0 / std), cdf(2.0 / std)
    u = torch.rand(shape, generator=gen, dtype=torch.float64) * (2 * hi - 2 * lo) + (2 * lo - 1)
    return (torch.erfinv(u) * std * math.sqrt(2.0)).clamp(-2.0, 2.0)


def impulse_factors(pe: Tensor, grid: tuple[int, int], heads: int, rank: int, gen: torch.Generator) -> list[
        tuple[Tensor, Tensor]]:
    """Per head (left d x rank, right rank x d), each of Frobenius norm 1, with left @ right the
    rank-`rank` approximation of pe+ T_h pe+^T: the Q/K product that, on the position
    embeddings `pe` (N x d, layer-normed), gives logits peaking at head h's offset."""
    import torch

    n = pe.shape[0]
    targets = torch.stack([shift_matrix(grid, impulse_offset(h)) for h in range(heads)])
    noise = truncated_normal((heads, n, n), IMPULSE_NOISE_STD, gen)
    targets = IMPULSE_PEAK * targets + IMPULSE_NOISE * noise * (targets == 0)
    # pe+ = (pe^T pe)^+_rank pe^T, the rank-limited pseudo-inverse (d x N)
    u, s, vh = torch.linalg.svd(pe.T @ pe)
    s_inv = torch.zeros_like(s)
    s_inv[:rank] = 1.0 / s[:rank]
    pe_inv = (vh.T * s_inv) @ u.T @ pe.T
    factors = []
    for target in targets:
        a = pe_inv @ target @ pe_inv.T
        ua, sa, vha = torch.linalg.svd(a)
        root = sa[:rank].sqrt()
        left, right = ua[:, :rank] * root, root[:, None] * vha[:rank]
        factors.append((left / left.norm(), right / right.norm()))
    return factors


def _patch_pos_embed(model: nn.Module) -> Tensor:
    """The learned position embedding of the patch tokens (no class row), as a tensor view."""
    pos = getattr(model, "pos_embed", None)
    if pos is None or not hasattr(model, "patch_embed") or not pos.requires_grad:
        raise ValueError(f"init 'impulse' needs a timm VisionTransformer with a learned position embedding; "
                         f"{type(model).__name__} has none (pos_embed: learned)")
    skip = 0 if getattr(model, "no_embed_class", False) else getattr(model, "num_prefix_tokens", 0)
    return pos[0, skip:]


@register_init("impulse", touches=("q", "k", "v", "proj", "pos_embed"),
               params={"norm_p": Param(18.0, "factor on the position embedding", minimum=0),
                       "norm_q": Param(7.0, "Frobenius norm of each head's W_q and W_k", minimum=0),
                       **VO, "dist": Param("uniform", "the V/Proj noise (the published code's: uniform)",
                                           choices=NOISE)},
               source="Zheng et al., NeurIPS 2025 (arXiv 2505.19985); code osiriszjq/structured_initialization",
               # It scales a learned embedding (timm's, std 0.02, to 0.36): a fixed sin-cos table
               # scaled by 18 drowns the patch content, and nothing can learn it back (digits: chance).
               needs={"pos_embed": "learned"}, kinds=("vision",))
def impulse(model: nn.Module, gen: torch.Generator, norm_p: float, norm_q: float, alpha2: float, beta2: float,
            dist: str) -> None:
    """Closed form, no optimisation: head h's Q/K product makes the (scaled, layer-normed)
    position embeddings attend at its fixed 3x3 offset (centre, up, right, left, down, then the
    diagonals); V/Proj as mimetic's (alpha2 Z - beta2 I). Touches pos_embed (scaled by norm_p),
    Q, K, V and Proj."""
    import torch

    grid = tuple(model.patch_embed.grid_size)
    with torch.no_grad():
        model.pos_embed.mul_(norm_p)
    pos = _patch_pos_embed(model).detach().to(torch.float64)
    pe = torch.nn.functional.layer_norm(pos, (pos.shape[-1],))  # as each block's norm1 at init
    for layer in layers_of(model):  # fresh impulse noise per layer, then that layer's V/Proj noise
        w = layer.read()
        q, k = w.q.to(torch.float64).clone(), w.k.to(torch.float64).clone()
        hk = layer.head_dim
        for h, (left, right) in enumerate(impulse_factors(pe, grid, layer.num_heads, hk, gen)):
            cols = slice(h * hk, (h + 1) * hk)
            q[:, cols], k[:, cols] = norm_q * left, norm_q * right.T
        layer.write(q=q, k=k)
        init_vo(layer, gen, alpha2, beta2, dist)


# No public code or constants: semi-orthogonal Q and K with gain 1 is the paper's stated condition
# ((W^h)^T W^h = I) as it stands; V = I (scale 1) is "a (scaled) identity" with no scale published;
# Proj keeps the model's own init, as the description names only Q, K and V. Each is a parameter.
@register_init("conditioned", touches=("q", "k", "v", "proj"),
               params={"qk_gain": Param(1.0, "factor on each head's semi-orthogonal W_q^h and W_k^h", minimum=0),
                       "v_scale": Param(1.0, "W_v = v_scale * I", minimum=0),
                       "proj": Param("model", "W_proj: the model's own init, or the identity",
                                     choices=("model", "identity"))},
               source="Saratchandran & Lucey, ICLR 2026 (OpenReview cKNOCYPo2W); no public code")
def conditioned(model: nn.Module, gen: torch.Generator, qk_gain: float, v_scale: float, proj: str) -> None:
    """Well-conditioned attention: per head, W_q^h and W_k^h independently semi-orthogonal
    ((W^h)^T W^h = I, times qk_gain), W_v a scaled identity; W_proj the model's own or I."""
    import torch

    for layer in layers_of(model):
        d, hk = layer.dim, layer.head_dim
        q, k = torch.empty(d, d, dtype=torch.float64), torch.empty(d, d, dtype=torch.float64)
        for h in range(layer.num_heads):  # Q's head, then K's: each its own draw
            cols = slice(h * hk, (h + 1) * hk)
            for w in (q, k):
                basis, r = torch.linalg.qr(torch.randn(d, hk, generator=gen, dtype=torch.float64))
                w[:, cols] = qk_gain * basis * torch.sign(torch.diagonal(r))  # Haar: QR with signs fixed
        eye = torch.eye(d, dtype=torch.float64)
        layer.write(q=q, k=k, v=v_scale * eye, proj=eye if proj == "identity" else None)


# modded-nanogpt's train_gpt.py at 5d2365f (`mimetic_vo_init`, called with beta=0.05,
# noise_std=0.01): Q and K keep their own init; master replaced it with a tuned uniform init
# within the minute (1ee5d10), so this is the construction of record #64's runs only.
@register_init("vo-only", touches=("v", "proj"),
               params={"beta": Param(0.05, "W_v = +sqrt(beta) I and W_proj = -sqrt(beta) I before the noise",
                                     minimum=0),
                       "noise_std": Param(0.01, "std of the normal noise on both whole matrices", minimum=0)},
               source="modded-nanogpt PR #214 (merged 2026-01-31, commit 5d2365f), `mimetic_vo_init`")
def vo_only(model: nn.Module, gen: torch.Generator, beta: float, noise_std: float) -> None:
    """V/Proj alone, as in modded-nanogpt's record: per head the V block +sqrt(beta) I and the
    output-projection block -sqrt(beta) I (so W_v W_proj ~ -beta I), then N(0, noise_std^2) on
    every entry of both; W_q and W_k keep the model's own init."""
    import torch

    for layer in layers_of(model):  # per layer: V's noise, then Proj's
        eye = math.sqrt(beta) * torch.eye(layer.dim, dtype=torch.float64)
        v = eye + noise_std * torch.randn(layer.dim, layer.dim, generator=gen, dtype=torch.float64)
        proj = -eye + noise_std * torch.randn(layer.dim, layer.dim, generator=gen, dtype=torch.float64)
        layer.write(v=v, proj=proj)
