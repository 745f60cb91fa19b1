"""The attention-structure figures (the paper's Figures 1 and 2): heatmaps of W_q W_k^T per head
and W_v W_proj per layer, their diagonal profile over depth (every pretrained model's side by
side, ViT, GPT-2 and BERT alike), and sources side by side. Each writes the files it is given
(PNG, PDF: by suffix)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.cm
import matplotlib.colors
import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mimetic.report._plot import Outputs, look, save


PRODUCT_LABELS = {"qk": r"$W_q^h {W_k^h}^\top$", "vo": r"$W_v W_{proj}$"}
_CMAP = "RdBu_r"  # positive red, negative blue, zero white


def _crop(p: np.ndarray, crop: int | None) -> np.ndarray:
    """The top-left crop x crop block (the whole matrix for None or 0), where the diagonal is visible."""
    n = p.shape[-1] if not crop else min(crop, p.shape[-1])
    return np.asarray(p[..., :n, :n], dtype=np.float32)


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


def attention_heatmaps(products: dict[str, np.ndarray], out: Outputs, title: str = "",
                       crop: int | None = 64) -> None:
    """The paper's Figure 1 layout: layers across, heads down, W_q^h W_k^h^T per head, and a
    bottom row of W_v W_proj per layer. Each product has one symmetric colour scale shared by
    all its panels (so depth trends are visible); `crop` keeps the top-left block."""
    with look("white", 1.1):
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
        heading = f"{title}\n" if title else ""  # on its own line: a grid of few layers is narrow
        fig.suptitle(f"{heading}{PRODUCT_LABELS['qk']} per head (rows), {PRODUCT_LABELS['vo']} (bottom row); {block}",
                     fontsize=11)
        save(fig, out)


def diagonal_profile(metrics: pd.DataFrame, out: Outputs, hue: str = "model", title: str = "",
                     colors: dict[str, str] | None = None, dashed: Sequence[str] = ()) -> None:
    """Diagonal mean and identity cosine vs layer, Q/K (mean over heads, band: ± one std over
    heads) and V/Proj panels, one line per `hue` value (a model, or a run's init/final). Models
    of different depths (a 6-layer BERT beside a 12-layer ViT) share a relative-depth axis, 0 at
    the first layer and 1 at the last. `colors`: hue value -> colour (the arms' colours of the
    results figures; the rest grey); `dashed`: the hue values drawn dashed with hollow markers
    (the initialized models)."""
    with look("whitegrid", 1.1):
        df, xlabel = _depth_axis(metrics, hue)
        order = list(dict.fromkeys(df[hue]))  # first-seen order: the caller's order
        style = {}
        if colors is not None:  # else seaborn's palette: pretrained models are no arms
            style = dict(palette={h: colors.get(h, "0.35") for h in order},
                         dashes={h: (4, 2) if h in dashed else "" for h in order},
                         markers={h: "X" if h in dashed else "o" for h in order})
        fig, axes = plt.subplots(2, 2, figsize=(9, 6.6), sharex=True)
        for col, product in enumerate(("qk", "vo")):
            part = df[df["product"] == product]
            for row, (metric, label) in enumerate((("diag_mean", "diagonal mean"),
                                                   ("identity_cosine", "cosine similarity to I"))):
                ax = axes[row, col]
                # Markers and dashes differ per line too: an init and its trained model can overlap.
                sns.lineplot(part, x="layer", y=metric, hue=hue, hue_order=order, style=hue, style_order=order,
                             **({"markers": True, "dashes": True} | style), errorbar="sd", ax=ax,
                             legend=row == 0 and col == 1)
                ax.axhline(0, color="0.3", lw=0.8)
                ax.set(xlabel=xlabel if row else "", ylabel=label)
                if row == 0:
                    ax.set_title(PRODUCT_LABELS[product] + (" (mean over heads)" if product == "qk" else ""))
        axes[0, 1].legend(title=None, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
        if xlabel == "layer":
            layers = sorted(df["layer"].unique())
            axes[1, 0].set_xticks(layers if len(layers) <= 16 else layers[::2])
        fig.suptitle(f"{title + ': ' if title else ''}the products' diagonal over depth "
                     "(band: ± one std over heads)", fontsize=11)
        fig.tight_layout()
        save(fig, out)


def _depth_axis(metrics: pd.DataFrame, hue: str) -> tuple[pd.DataFrame, str]:
    """The x values: the layer (from 1) when every `hue` value has one depth; else the relative
    depth, since layer 6 is the last of a 6-layer model but the middle of a 12-layer one."""
    depth = metrics.groupby(hue)["layer"].transform("max") + 1
    if depth.nunique() <= 1:
        return metrics.assign(layer=metrics["layer"] + 1), "layer"
    return (metrics.assign(layer=metrics["layer"] / (depth - 1).clip(lower=1)),
            "relative depth (0: first layer, 1: last)")


def _described(label: str, path: str | Path, depth: int) -> str:
    """A source's label with the layout it was extracted in and its depth, "vit (timm, 12 layers)",
    from its products' metadata (`mimetic extract` writes the layout); the label alone without one."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        layout = (f.metadata() or {}).get("layout")
    return f"{label} ({layout}, {depth} layers)" if layout else label


def structure_comparison(sources: dict[str, dict[str, np.ndarray]], out: Outputs, title: str = "",
                         crop: int | None = 32) -> None:
    """Side by side, one column per source (e.g. pretrained, default init, mimetic init,
    trained from each): W_q^h W_k^h^T of head 1 and W_v W_proj at each source's first, middle
    and last layer (sources may differ in depth). They may also differ in scale by orders of
    magnitude, so each column has its own symmetric colour scale per product, printed under
    its name."""
    with look("white", 1.1):
        positions = ("first", "middle", "last")
        rows = [(product, pos) for product in ("qk", "vo") for pos in positions]
        size = 1.45
        fig, axes = plt.subplots(len(rows), len(sources), squeeze=False, layout="constrained",
                                 figsize=(size * len(sources) + 1.6, size * len(rows) + 1.1))
        for col, (name, products) in enumerate(sources.items()):
            depth = products["qk"].shape[0]
            index = dict(zip(positions, (0, depth // 2, depth - 1)))
            qk = _crop(products["qk"][:, 0], crop)
            vo = _crop(products["vo"], crop)
            layers = list(index.values())
            limits = {"qk": _symmetric_limit(qk[layers]), "vo": _symmetric_limit(vo[layers])}
            for row, (product, pos) in enumerate(rows):
                m = (qk if product == "qk" else vo)[index[pos]]
                _matrix(axes[row, col], m, limits[product])
                axes[row, col].set_xlabel(f"layer {index[pos] + 1}/{depth}", fontsize=7, labelpad=2)
            axes[0, col].set_title(f"{name}\nQ/K ±{limits['qk']:.3g}\nV/Proj ±{limits['vo']:.3g}", fontsize=8)
        for row, (product, pos) in enumerate(rows):
            what = "Q/K head 1" if product == "qk" else "V/Proj"
            axes[row, 0].set_ylabel(f"{what}\n{pos} layer", fontsize=9)
        unit = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(-1, 1), cmap=_CMAP)
        fig.colorbar(unit, ax=axes, shrink=0.5, aspect=30, ticks=[-1, 0, 1], label="value / the column's scale (above)")
        n = qk.shape[-1]
        fig.suptitle(f"{title + ': ' if title else ''}{PRODUCT_LABELS['qk']} and {PRODUCT_LABELS['vo']}, "
                     f"top-left {n}x{n}", fontsize=11)
        save(fig, out)


def write_all(products: dict[str, str | Path], metrics: dict[str, str | Path], *,
              heatmaps: dict[str, Sequence[str | Path]], compare: Sequence[str | Path] = (),
              profile: Sequence[str | Path] = (), title: str = "", crop: int = 64, compare_crop: int = 32,
              arms: dict[str, str] | None = None, initialized: Sequence[str] = (), baseline: str = "default") -> None:
    """One set of sources' structure figures at once: the heatmaps of the sources named in
    `heatmaps` (label -> files), the sources side by side (`compare`, in the products' order) and
    the diagonal profile of `metrics` (label -> structure.csv) over depth. `arms`: label -> the
    arm a source comes from (its colour in every results figure); `initialized`: the labels of
    sources taken at initialization."""
    from safetensors.numpy import load_file  # the products as numpy arrays: no torch in the report

    from mimetic.report.figures import arm_colors

    loaded = {label: load_file(str(path)) for label, path in products.items()}
    names = {label: _described(label, path, loaded[label]["qk"].shape[0]) for label, path in products.items()}
    for label, files in heatmaps.items():
        attention_heatmaps(loaded[label], files, title=names[label] if not title else f"{title}, {names[label]}",
                           crop=crop)
    if compare:
        structure_comparison(loaded, compare, title=title, crop=compare_crop)
    if profile:
        table = pd.concat([pd.read_csv(path).assign(model=names[label]) for label, path in metrics.items()])
        colors = None
        if arms:
            palette = arm_colors(set(arms.values()), baseline)
            colors = {names[label]: palette[arm] for label, arm in arms.items()}
        diagonal_profile(table, profile, title=title, colors=colors, dashed=[names[label] for label in initialized])
