"""Figures, one function per figure; each writes PNG (and PDF beside it for papers)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: workstations, cluster nodes and CI alike

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from torch import Tensor  # noqa: E402

from mimetic import io  # noqa: E402


def _save(fig: plt.Figure, out: str | Path) -> None:
    """Write `out` (PNG) and the same figure as PDF beside it, atomically."""
    out = Path(out)
    for path in (out, out.with_suffix(".pdf")):
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], dpi=200, bbox_inches="tight")
    plt.close(fig)


def learning_curves(epochs: pd.DataFrame, out: str | Path, metric: str = "test_acc",
                    label: str = "test accuracy (%)") -> None:
    """`metric` vs epoch, one panel per experiment, one line per arm: mean over seeds with a
    band of ± one standard deviation."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.2)
    experiments = sorted(epochs["experiment"].unique())
    fig, axes = plt.subplots(1, len(experiments), figsize=(4.5 * len(experiments), 3.6), squeeze=False)
    for ax, exp in zip(axes[0], experiments):
        df = epochs[epochs["experiment"] == exp]
        n = df.groupby("arm")["seed"].nunique()
        sns.lineplot(df, x="epoch", y=metric, hue="arm", hue_order=sorted(n.index), errorbar="sd", ax=ax)
        ax.set(title=exp, xlabel="epoch", ylabel=label)
        ax.legend(title=None, labels=[f"{a} (n={n[a]})" for a in sorted(n.index)],
                  handles=ax.get_legend().legend_handles)
    fig.tight_layout()
    _save(fig, out)


# --- Attention structure: W_q W_k^T per head and W_v W_proj per layer ---------------------

PRODUCT_LABELS = {"qk": r"$W_q^h {W_k^h}^\top$", "vo": r"$W_v W_{proj}$"}
_CMAP = "RdBu_r"  # positive red, negative blue, zero white


def _crop(p: Tensor, crop: int | None) -> np.ndarray:
    """The top-left crop x crop block (the whole matrix for None or 0), where the diagonal is visible."""
    n = p.shape[-1] if not crop else min(crop, p.shape[-1])
    return p[..., :n, :n].float().numpy()


def _symmetric_limit(*blocks: np.ndarray) -> float:
    # The 99.5th percentile of |value|: a few outliers (pretrained models have some) must not
    # wash out the diagonal; the rest saturates at the colour bar's ends.
    values = np.abs(np.concatenate([b.ravel() for b in blocks]))
    limit = float(np.quantile(values, 0.995)) if values.size else 0.0
    return limit if limit > 0 else 1.0


def _matrix(ax: plt.Axes, m: np.ndarray, limit: float) -> matplotlib.image.AxesImage:
    ax.set_xticks([])
    ax.set_yticks([])
    return ax.imshow(m, cmap=_CMAP, vmin=-limit, vmax=limit, interpolation="nearest")


def attention_heatmaps(products: dict[str, Tensor], out: str | Path, title: str = "",
                       crop: int | None = 64) -> None:
    """The paper's Figure 1 layout: layers across, heads down, W_q^h W_k^h^T per head, and a
    bottom row of W_v W_proj per layer. Each product has one symmetric colour scale shared by
    all its panels (so depth trends are visible); `crop` keeps the top-left block."""
    qk, vo = _crop(products["qk"], crop), _crop(products["vo"], crop)
    layers, heads, n = qk.shape[0], qk.shape[1], qk.shape[-1]
    size = 1.15
    fig, axes = plt.subplots(heads + 1, layers, figsize=(size * layers + 1.6, size * (heads + 1) + 0.7),
                             squeeze=False, layout="constrained")
    qk_lim, vo_lim = _symmetric_limit(qk), _symmetric_limit(vo)
    for layer in range(layers):
        for head in range(heads):
            im_qk = _matrix(axes[head, layer], qk[layer, head], qk_lim)
        im_vo = _matrix(axes[heads, layer], vo[layer], vo_lim)
        axes[0, layer].set_title(f"layer {layer + 1}", fontsize=9)
    for head in range(heads):
        axes[head, 0].set_ylabel(f"head {head + 1}", fontsize=9)
    axes[heads, 0].set_ylabel(r"$W_v W_{proj}$", fontsize=9)
    fig.colorbar(im_qk, ax=axes[:heads], aspect=12 * heads, label=PRODUCT_LABELS["qk"])
    fig.colorbar(im_vo, ax=axes[heads:], aspect=12, label=PRODUCT_LABELS["vo"])
    full = products["qk"].shape[-1]
    block = f"top-left {n}x{n} of {full}x{full}" if n < full else f"{n}x{n}"
    fig.suptitle(f"{title + ': ' if title else ''}{PRODUCT_LABELS['qk']} per head (rows), "
                 f"{PRODUCT_LABELS['vo']} (bottom row); {block}", fontsize=11)
    _save(fig, out)


def diagonal_profile(metrics: pd.DataFrame, out: str | Path, hue: str = "model") -> None:
    """Diagonal mean and identity cosine vs layer, Q/K (mean over heads, band: ± one std over
    heads) and V/Proj panels, one line per `hue` value (a model, or a run's init/final)."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    df = metrics.assign(layer=metrics["layer"] + 1)
    order = list(dict.fromkeys(df[hue]))  # first-seen order: the caller's order
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.2), sharex=True)
    for col, product in enumerate(("qk", "vo")):
        part = df[df["product"] == product]
        for row, (metric, label) in enumerate((("diag_mean", "diagonal mean"),
                                               ("identity_cosine", "cosine similarity to I"))):
            ax = axes[row, col]
            sns.lineplot(part, x="layer", y=metric, hue=hue, hue_order=order, marker="o", errorbar="sd",
                         ax=ax, legend=row == 0 and col == 1)
            ax.axhline(0, color="0.3", lw=0.8)
            ax.set(xlabel="layer" if row else "", ylabel=label)
            if row == 0:
                ax.set_title(PRODUCT_LABELS[product] + (" (mean over heads)" if product == "qk" else ""))
    axes[0, 1].legend(title=None, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    layers = sorted(df["layer"].unique())
    axes[1, 0].set_xticks(layers if len(layers) <= 16 else layers[::2])
    fig.tight_layout()
    _save(fig, out)


def structure_comparison(sources: dict[str, dict[str, Tensor]], out: str | Path, title: str = "",
                         layers: list[int] | None = None, crop: int | None = 32) -> None:
    """Side by side, one column per source (e.g. pretrained, default init, mimetic init,
    trained from each): W_q^h W_k^h^T of head 1 and W_v W_proj at a few layers (first,
    middle, last by default; 0-based). Sources may differ in scale by orders of magnitude, so
    each column has its own symmetric colour scale per product, printed under its name."""
    depth = min(p["qk"].shape[0] for p in sources.values())
    layers = layers if layers is not None else sorted({0, depth // 2, depth - 1})
    bad = [layer for layer in layers if not 0 <= layer < depth]
    if bad:
        raise ValueError(f"layers {bad} out of range: the shallowest source has {depth} layers (0-based)")
    rows = [("qk", layer) for layer in layers] + [("vo", layer) for layer in layers]
    size = 1.45
    fig, axes = plt.subplots(len(rows), len(sources), squeeze=False, layout="constrained",
                             figsize=(size * len(sources) + 1.6, size * len(rows) + 0.9))
    for col, (name, products) in enumerate(sources.items()):
        qk = _crop(products["qk"][:, 0], crop)
        vo = _crop(products["vo"], crop)
        limits = {"qk": _symmetric_limit(qk[layers]), "vo": _symmetric_limit(vo[layers])}
        for row, (product, layer) in enumerate(rows):
            m = qk[layer] if product == "qk" else vo[layer]
            _matrix(axes[row, col], m, limits[product])
        axes[0, col].set_title(f"{name}\nQ/K ±{limits['qk']:.2g}, V/P ±{limits['vo']:.2g}", fontsize=9)
    for row, (product, layer) in enumerate(rows):
        head = " head 1" if product == "qk" else ""
        axes[row, 0].set_ylabel(f"{'Q/K' if product == 'qk' else 'V/Proj'}\nlayer {layer + 1}{head}", fontsize=9)
    unit = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(-1, 1), cmap=_CMAP)
    fig.colorbar(unit, ax=axes, shrink=0.5, aspect=30, ticks=[-1, 0, 1], label="value / the column's scale (above)")
    n = qk.shape[-1]
    fig.suptitle(f"{title + ': ' if title else ''}{PRODUCT_LABELS['qk']} and {PRODUCT_LABELS['vo']}, "
                 f"top-left {n}x{n}", fontsize=11)
    _save(fig, out)
