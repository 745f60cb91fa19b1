"""Attention products W_q W_k^T (per head) and W_v W_proj (per layer), and their metrics.

The same functions serve pretrained, freshly initialized and trained models, and raw
weights read from a checkpoint (see `products_from_weights`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from mimetic.attention.weights import AttentionWeights, attention_layers

METRICS = ("diag_mean", "offdiag_abs_mean", "identity_cosine")


def products_from_weights(layers: Sequence[AttentionWeights]) -> dict[str, Tensor]:
    """{"qk": (L, H, d, d), "vo": (L, d, d)} in float32 on the CPU.

    qk[l, h] = W_q^h (W_k^h)^T, the bilinear form of head h's attention scores (before the
    1/sqrt(k) scale); vo[l] = W_v W_proj, all heads together.
    """
    qk, vo = [], []
    for w in layers:
        q, k = w.q.float().cpu(), w.k.float().cpu()
        hk = w.head_dim
        qk.append(torch.stack([q[:, h * hk : (h + 1) * hk] @ k[:, h * hk : (h + 1) * hk].T
                               for h in range(w.num_heads)]))
        vo.append(w.v.float().cpu() @ w.proj.float().cpu())
    return {"qk": torch.stack(qk), "vo": torch.stack(vo)}


def attention_products(model: nn.Module) -> dict[str, Tensor]:
    """The products of every supported attention layer of `model` (see products_from_weights)."""
    return products_from_weights([layer.read() for layer in attention_layers(model)])


def matrix_metrics(p: Tensor) -> dict[str, float]:
    """Diagonal mean, mean |off-diagonal| and cosine similarity to I of one square matrix."""
    d = p.shape[-1]
    p = p.double()
    diag = torch.diagonal(p)
    off_abs = (p.abs().sum() - diag.abs().sum()) / (d * d - d)
    norm = torch.linalg.matrix_norm(p)
    cosine = diag.sum() / (norm * math.sqrt(d)) if norm > 0 else torch.tensor(0.0)
    return {"diag_mean": diag.mean().item(), "offdiag_abs_mean": off_abs.item(), "identity_cosine": cosine.item()}


def structure_metrics(products: dict[str, Tensor]) -> pd.DataFrame:
    """Tidy table: one row per (layer, head, product) with the METRICS columns.

    V/Proj rows span all heads, so their head is missing (<NA>).
    """
    rows = []
    for layer, heads in enumerate(products["qk"]):
        for head, p in enumerate(heads):
            rows.append({"layer": layer, "head": head, "product": "qk", **matrix_metrics(p)})
        rows.append({"layer": layer, "head": pd.NA, "product": "vo", **matrix_metrics(products["vo"][layer])})
    df = pd.DataFrame(rows)
    return df.astype({"layer": "int64", "head": "Int64"})


def layer_statistics(model: nn.Module) -> list[dict[str, float]]:
    """Per attention layer: Q/K's diagonal mean and mean |off-diagonal| (means over heads) and
    V/Proj's, as `qk_diag_mean`, `qk_offdiag_abs_mean`, `vo_diag_mean`, `vo_offdiag_abs_mean`
    (a run's init.json)."""
    m = structure_metrics(attention_products(model))
    stats = m.groupby(["layer", "product"])[["diag_mean", "offdiag_abs_mean"]].mean()
    return [{"layer": int(layer), **{f"{p}_{k}": float(stats.loc[(layer, p), k]) for p in ("qk", "vo")
                                     for k in ("diag_mean", "offdiag_abs_mean")}}
            for layer in sorted(m["layer"].unique())]


def write(products: dict[str, Tensor], products_path: str | Path, metrics_path: str | Path,
          metadata: dict[str, str]) -> None:
    """The products (safetensors, with `metadata`) and their structure metrics (CSV), atomically."""
    from mimetic import io

    io.write_safetensors(products_path, products, metadata=metadata)
    io.write_csv(metrics_path, structure_metrics(products))

