"""Figures, one function per figure; each writes the files it is given (PNG, PDF: by suffix)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: workstations, cluster nodes and CI alike

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    from torch import Tensor

from mimetic import compare, io, stats  # noqa: E402
from mimetic.claims import Claim  # noqa: E402


# --- One look for every results figure -------------------------------------------------------

# Okabe & Ito's colour-blind-safe palette. The baseline is always blue, mimetic always orange,
# other arms take the rest in sorted order; yellow (weak on white) comes last.
OKABE_ITO = {"blue": "#0072b2", "orange": "#e69f00", "sky blue": "#56b4e9", "bluish green": "#009e73",
             "reddish purple": "#cc79a7", "vermillion": "#d55e00", "black": "#000000", "yellow": "#f0e442"}
_OTHERS = [c for k, c in OKABE_ITO.items() if k not in ("blue", "orange")]


def arm_colors(arms: Iterable[str], baseline: str = "default", treatment: str = "mimetic") -> dict[str, str]:
    """Arm label -> colour, in compare.arm_order (baseline, treatment, the rest sorted). Given the
    same set of arms (every figure of one results folder sees all of them) the mapping is the
    same; the baseline and mimetic keep their colours whatever the set. Past 8 arms colours repeat."""
    order = compare.arm_order(arms, baseline, treatment)
    fixed = {baseline: OKABE_ITO["blue"], treatment: OKABE_ITO["orange"]}
    rest = iter(_OTHERS * (1 + len(order) // len(_OTHERS)))
    return {a: fixed[a] if a in fixed else next(rest) for a in order}


def paper_style() -> None:
    """The one style of the results figures (the structure figures set their own)."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.15,
                  rc={"axes.titlesize": 11, "axes.labelsize": 10.5, "legend.fontsize": 9.5, "pdf.fonttype": 42})


Outputs = str | Path | Sequence[str | Path]


def _save(fig: plt.Figure, out: Outputs) -> None:
    """Write the figure to each file of `out` (PNG, PDF, SVG: by suffix), atomically."""
    for path in [out] if isinstance(out, (str, Path)) else out:
        path = Path(path)
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], dpi=200, bbox_inches="tight")
    plt.close(fig)


def learning_curves(epochs: pd.DataFrame, out: Outputs, metric: str = "test_acc",
                    label: str = "test accuracy (%)", baseline: str = "default",
                    colors: dict[str, str] | None = None) -> None:
    """`metric` vs epoch, one panel per experiment, one line per arm: mean over seeds with a
    band of ± one standard deviation. Arms keep their arm_colors() colour."""
    paper_style()
    colors = colors or arm_colors(epochs["arm"].unique(), baseline)
    experiments = sorted(epochs["experiment"].unique())
    fig, axes = plt.subplots(1, len(experiments), figsize=(4.5 * len(experiments), 3.6), squeeze=False)
    for ax, exp in zip(axes[0], experiments):
        df = epochs[epochs["experiment"] == exp]
        n = df.groupby("arm")["seed"].nunique()
        order = [a for a in colors if a in n.index]
        sns.lineplot(df, x="epoch", y=metric, hue="arm", hue_order=order, palette=colors, errorbar="sd", ax=ax)
        ax.set(title=f"{exp} (mean ± sd over seeds)", xlabel="epoch", ylabel=label)
        ax.legend(title=None, labels=[f"{a} (n={n[a]})" for a in order],
                  handles=ax.get_legend().legend_handles)
    fig.tight_layout()
    _save(fig, out)


# --- Results figures: accuracy, paired gains, time to accuracy, (alpha, beta) grid ------------

FIGURES = ("final_accuracy", "gain_forest", "time_to_accuracy")
GRID_FIGURE = "grid_heatmap"


def _offsets(k: int, width: float = 0.5) -> np.ndarray:
    """k evenly spread horizontal positions in [-width/2, width/2]: seeds side by side, no
    random jitter, so the figure is the same on every run."""
    return np.zeros(1) if k == 1 else np.linspace(-width / 2, width / 2, k)


def final_accuracy(runs: pd.DataFrame, out: Outputs, baseline: str = "default",
                   treatment: str = compare.TREATMENT, colors: dict[str, str] | None = None,
                   metric: str = compare.METRIC) -> None:
    """Final test accuracy per experiment (one panel each, own y scale) and arm: every seed as a
    dot, the mean ± sd as a bar beside them; n per arm under its name."""
    paper_style()
    colors = colors or arm_colors(runs["arm"].unique(), baseline, treatment)
    experiments = sorted(runs["experiment"].unique())
    arms_per = [compare.arm_order(runs.loc[runs["experiment"] == e, "arm"], baseline, treatment) for e in experiments]
    fig, axes = plt.subplots(1, len(experiments), squeeze=False, figsize=(sum(1.0 + 0.75 * len(a) for a in arms_per)
                                                                            + 0.8, 3.9),
                             gridspec_kw={"width_ratios": [1.0 + 0.75 * len(a) for a in arms_per]})
    rotate = max(len(a) for a in arms_per) > 3 or max(len(x) for a in arms_per for x in a) > 10
    for ax, exp, arms in zip(axes[0], experiments, arms_per):
        for i, arm in enumerate(arms):
            v = compare.values(runs, exp, arm, metric)
            s = stats.summary(v.to_numpy())
            ax.scatter(i - 0.12 + _offsets(len(v), 0.22), v, s=22, color=colors[arm], alpha=0.8,
                       edgecolor="white", linewidth=0.5, zorder=3)
            ax.errorbar(i + 0.18, s.mean, yerr=0 if np.isnan(s.sd) else s.sd, fmt="_", markersize=14,
                        color="0.15", capsize=3, lw=1.3, zorder=4)
        sep = " " if rotate else "\n"
        ax.set_xticks(range(len(arms)), [f"{a}{sep}(n={len(compare.values(runs, exp, a, metric))})" for a in arms],
                      rotation=30 if rotate else 0, ha="right" if rotate else "center",
                      rotation_mode="anchor" if rotate else "default")
        ax.set_xlim(-0.6, len(arms) - 0.4)
        ax.set_title(exp)
        ax.grid(axis="x", visible=False)
    axes[0, 0].set_ylabel("final test accuracy (%)" if metric == "final_test_acc" else f"{metric} (%)")
    handles = [matplotlib.lines.Line2D([], [], ls="", marker="o", color="0.5", label="one seed"),
               matplotlib.lines.Line2D([], [], ls="-", marker="_", markersize=14, color="0.15",
                                       label="mean ± sd over seeds")]
    fig.legend(handles=handles, loc="lower center", ncol=2, bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    _save(fig, out)


def _forest_rows(runs: pd.DataFrame, claims: Sequence[Claim], baseline: str, treatment: str,
                 metric: str) -> list[dict]:
    """One row per claim, then per remaining (experiment, arm) vs the baseline, grouped by experiment."""
    main = compare.main(runs, baseline, claims, (), treatment, metric)
    rows = []
    for r in main.to_dict("records"):
        rows.append({**r, "arm": r["treatment"]})
    abl = compare.ablation(runs, baseline, treatment, metric)
    covered = {(r["experiment"], r["treatment"], r["baseline"]) for r in rows}
    for r in abl.to_dict("records"):
        if r["arm"] != baseline and (r["experiment"], r["arm"], baseline) not in covered:
            rows.append({**r, "treatment": r["arm"], "baseline": baseline, "claim": "", "claimed_gain": np.nan})
    order = list(dict.fromkeys(r["experiment"] for r in rows))
    return sorted(rows, key=lambda r: order.index(r["experiment"]))  # stable: claims first in each experiment


def gain_forest(runs: pd.DataFrame, claims: Sequence[Claim], out: Outputs, baseline: str = "default",
                treatment: str = compare.TREATMENT, colors: dict[str, str] | None = None,
                metric: str = compare.METRIC) -> None:
    """The answer at a glance: per claim (and per other arm) the gain over the baseline paired by
    seed, its 95% t-interval, every seed's gain, the claimed gain as a marker, and the verdict."""
    paper_style()
    colors = colors or arm_colors(runs["arm"].unique(), baseline, treatment)
    rows = _forest_rows(runs, claims, baseline, treatment, metric)
    fig, ax = plt.subplots(figsize=(8.2, 0.62 * len(rows) + 1.9), layout="constrained")
    ys = np.arange(len(rows))[::-1]
    labels, xs = [], [0.0]
    for y, r in zip(ys, rows):
        color = colors.get(r["treatment"], "0.4")
        n = r.get("gain_n")
        has = isinstance(n, (int, float)) and not np.isnan(n) and n > 0
        if has:
            t = compare.values(runs, r["experiment"], r["treatment"], r["metric"] if "metric" in r else metric)
            b = compare.values(runs, r["experiment"], r["baseline"], r["metric"] if "metric" in r else metric)
            d = (t - b).dropna()
            ax.scatter(d, y + 0.18 + np.zeros(len(d)), s=14, color=color, alpha=0.55, edgecolor="none", zorder=3)
            if not np.isnan(r["gain_t_lo"]):
                ax.plot([r["gain_t_lo"], r["gain_t_hi"]], [y, y], color=color, lw=2.4, solid_capstyle="butt",
                        zorder=3)
                xs += [r["gain_t_lo"], r["gain_t_hi"]]
            ax.plot(r["gain_mean"], y, "o", color=color, markersize=7, markeredgecolor="black", markeredgewidth=0.6,
                    zorder=6)  # above the claim's hollow diamond, which stays visible around it
            xs += list(d)
        if not np.isnan(r["claimed_gain"]):
            ax.plot(r["claimed_gain"], y, "D", markersize=9.5, markerfacecolor="none", markeredgecolor="black",
                    markeredgewidth=1.3, zorder=5)
            xs.append(r["claimed_gain"])
        name = f"{r['experiment']}: {r['treatment']} vs {r['baseline']}"
        detail = (f"claim {r['claim']}, " if r["claim"] else "") + (f"n={int(n)}" if has else "no runs")
        labels.append(f"{name}\n{detail}")
        verdict = r["verdict"]
        ax.annotate(verdict, xy=(1.0, y), xycoords=("axes fraction", "data"), xytext=(8, 0),
                    textcoords="offset points", va="center", ha="left", fontsize=9.5,
                    fontweight="bold" if r["claim"] else "normal", color="0.1" if r["claim"] else "0.35")
    ax.axvline(0, color="0.3", lw=0.9, ls="--", zorder=1)
    lo, hi = min(xs), max(xs)
    pad = 0.08 * (hi - lo or 1.0)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_yticks(ys, labels, fontsize=9)
    bounds = [i for i in range(1, len(rows)) if rows[i]["experiment"] != rows[i - 1]["experiment"]]
    for i in bounds:
        ax.axhline(ys[i] + 0.5, color="0.75", lw=0.8)
    unit = "final test accuracy" if metric == "final_test_acc" else metric
    ax.set_xlabel(f"gain in {unit} (percentage points), treatment − baseline, paired by seed")
    ax.set_title("Paired gain over the baseline: mean and 95% t-interval (verdict at right)")
    ax.grid(axis="y", visible=False)
    handles = [matplotlib.lines.Line2D([], [], ls="-", lw=2.4, marker="o", markersize=7, color="0.45",
                                       markeredgecolor="black", markeredgewidth=0.6,
                                       label="mean gain, 95% t-interval"),
               matplotlib.lines.Line2D([], [], ls="", marker="o", markersize=4, color="0.45", alpha=0.6,
                                       label="one seed"),
               matplotlib.lines.Line2D([], [], ls="", marker="D", markersize=8, markerfacecolor="none",
                                       markeredgecolor="black", markeredgewidth=1.3, label="claimed gain")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
    _save(fig, out)


def _time_unit(seconds: float) -> tuple[str, float]:
    if np.isnan(seconds) or seconds < 120:
        return "s", 1.0
    return ("min", 60.0) if seconds < 7200 else ("h", 3600.0)


def _n_label(runs: pd.DataFrame, experiment: str) -> str:
    """'n=5 per arm', or each arm's n where they differ."""
    n = runs[runs["experiment"] == experiment].groupby("arm")["seed"].nunique()
    return f"n={n.iloc[0]} per arm" if n.nunique() == 1 else ", ".join(f"{a}: n={k}" for a, k in n.items())


def time_to_accuracy(runs: pd.DataFrame, epochs: pd.DataFrame, out: Outputs, baseline: str = "default",
                     treatment: str = compare.TREATMENT,
                     levels: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
                     colors: dict[str, str] | None = None) -> None:
    """Epochs (top row) and wall time (bottom row) for each arm to reach each target accuracy:
    the baseline's mean final accuracy and fixed levels; one column per experiment. Dots: runs;
    marker and bar: mean ± sd over the runs that reach it; k/n at the right: runs that reach it,
    where not all do."""
    paper_style()
    colors = colors or arm_colors(runs["arm"].unique(), baseline, treatment)
    goals = compare.targets(runs, baseline, levels)
    reached = compare.reach(runs, epochs, goals)
    experiments = list(dict.fromkeys(goals["experiment"]))
    if not experiments:
        raise ValueError("no targets: no experiment has a baseline run and no levels were given")
    unit, scale = _time_unit(float(reached["wall_time"].max()))
    n_arms = max(runs.loc[runs["experiment"] == e, "arm"].nunique() for e in experiments)
    n_targets = int(goals.groupby("experiment").size().max())
    panel_h = n_targets * (0.17 * n_arms + 0.35) + 0.9
    fig, axes = plt.subplots(2, len(experiments), squeeze=False, layout="constrained",
                             figsize=(3.3 * len(experiments) + 0.9, 2 * panel_h + 0.8))
    for col, exp in enumerate(experiments):
        part = reached[reached["experiment"] == exp]
        arms = compare.arm_order(part["arm"], baseline, treatment)
        tgts = list(dict.fromkeys(part["target"]))
        step = 0.8 / len(arms)
        goal_acc = goals[goals["experiment"] == exp].set_index("target")["target_acc"]
        for row, (what, label, div) in enumerate((("epoch", "epochs to reach", 1.0),
                                                  ("wall_time", f"wall time to reach ({unit})", scale))):
            ax = axes[row, col]
            top = float(np.nanmax(part[what].to_numpy() / div)) if part[what].notna().any() else 1.0
            ax.set_xlim(0, top * 1.22)  # room at the right for the k/n counts
            for ti, tgt in enumerate(tgts):
                for ai, arm in enumerate(arms):
                    y = ti - 0.4 + step / 2 + ai * step  # the baseline first (top, the axis is inverted)
                    v = part[(part["target"] == tgt) & (part["arm"] == arm)][what] / div
                    ok = v.dropna()
                    ax.scatter(ok, np.full(len(ok), y), s=12, color=colors[arm], alpha=0.5, edgecolor="none")
                    if len(ok):
                        ax.errorbar(ok.mean(), y, xerr=ok.std(ddof=1) if len(ok) > 1 else 0, fmt="o",
                                    color=colors[arm], markeredgecolor="black", markeredgewidth=0.5,
                                    markersize=5.5, capsize=2, lw=1.2)
                    if len(ok) < len(v):
                        ax.annotate(f"{len(ok)}/{len(v)}", xy=(1.0, y), xycoords=("axes fraction", "data"),
                                    xytext=(-3, 0), textcoords="offset points", ha="right", va="center",
                                    fontsize=7.5, color="0.2")
            ax.set_yticks(range(len(tgts)), [f"{t}\n({goal_acc[t]:.1f}%)" if not t.endswith("%") else t
                                             for t in tgts])
            ax.set_ylim(len(tgts) - 0.5, -0.5)
            ax.set_xlabel(label)
            ax.grid(axis="y", visible=False)
            for b in np.arange(0.5, len(tgts) - 0.5):
                ax.axhline(b, color="0.8", lw=0.7)
            if row == 0:
                ax.set_title(f"{exp} ({_n_label(runs, exp)})")
            if col == 0:
                ax.set_ylabel("target test accuracy")
    handles = [matplotlib.lines.Line2D([], [], ls="", marker="o", color=colors[a], markeredgecolor="black",
                                       markeredgewidth=0.5, label=a) for a in colors if a in set(runs["arm"])]
    fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 4), frameon=False)
    note = ("marker ± bar: mean ± sd over the runs that reach the target; dots: runs; "
            "k/n: runs that reach it, where not all do")
    # wrapped: with one experiment the figure is narrow
    fig.legend(handles=[], loc="outside lower center", frameon=False,
               title=textwrap.fill(note, width=int(14 * fig.get_figwidth())), title_fontsize=9)
    _save(fig, out)


def grid_heatmap(runs: pd.DataFrame, out: Outputs, baseline: str = "default",
                 metric: str = compare.METRIC) -> None:
    """Per (alpha, beta) grid (compare.grid): the mean gain over the baseline, paired by seed, as
    colour (diverging, 0 white), each cell annotated with the gain, its 95% t-interval and the
    arm's mean accuracy; cells without an arm are hatched."""
    paper_style()
    g = compare.grid(runs, baseline, metric)
    if g.empty:
        raise ValueError("no (alpha, beta) grid among these arms")
    g = g.assign(alpha=[compare.axis_label(r, "alpha") for r in g.to_dict("records")],
                 beta=[compare.axis_label(r, "beta") for r in g.to_dict("records")])
    key = lambda s: [float(x) for x in s.split(" / ")] if s else []  # noqa: E731
    panels = list(g.groupby(["experiment", "group"], sort=True))
    # one symmetric scale for every panel, set by the mean gains (intervals would wash them out)
    limit = float(np.nanmax(np.abs(g["gain_mean"].to_numpy()))) or 1.0
    sizes = [(len(p["beta"].unique()), len(p["alpha"].unique())) for _, p in panels]
    fig, axes = plt.subplots(1, len(panels), squeeze=False, layout="constrained",
                             figsize=(sum(1.9 * w + 1.2 for w, _ in sizes) + 1.2, 1.2 * max(h for _, h in sizes) + 1.8))
    for ax, ((exp, _), part) in zip(axes[0], panels):
        alphas, betas = sorted(part["alpha"].unique(), key=key), sorted(part["beta"].unique(), key=key)
        m = np.full((len(alphas), len(betas)), np.nan)
        for r in part.to_dict("records"):
            i, j = alphas.index(r["alpha"]), betas.index(r["beta"])
            m[i, j] = r["gain_mean"]
            text = f"{r['gain_mean']:+.2f}" + (f"\n[{r['gain_t_lo']:.2f}, {r['gain_t_hi']:.2f}]"
                                                if not np.isnan(r["gain_t_lo"]) else "") + f"\n{r['mean']:.2f}%"
            dark = abs(r["gain_mean"]) > 0.6 * limit
            ax.text(j, i, text.replace("-", "\u2212"), ha="center", va="center", fontsize=8.5,
                    color="white" if dark else "black")
        for i, j in zip(*np.nonzero(np.isnan(m))):
            ax.text(j, i, "not run", ha="center", va="center", fontsize=8.5, color="0.45")
        ax.add_patch(matplotlib.patches.Rectangle((-0.5, -0.5), len(betas), len(alphas), fill=False,
                                                  hatch="///", edgecolor="0.8", lw=0, zorder=0))
        im = ax.imshow(np.ma.masked_invalid(m), cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(betas)), betas)
        ax.set_yticks(range(len(alphas)), alphas)
        ax.set_xlabel("β (Q/K / V/Proj)")
        ax.set_ylabel("α (Q/K / V/Proj)")
        ax.grid(False)
        fixed = ", ".join(f"{k}={v}" for k, v in json.loads(part["fixed_params"].iloc[0]).items())
        ns = sorted(set(part["n"]))
        ax.set_title(f"{exp}: {part['init'].iloc[0]}" + (f" ({fixed})" if fixed else "")
                     + f"\nn={'/'.join(map(str, ns))} seeds per cell", fontsize=10)
    fig.colorbar(im, ax=axes, shrink=0.9, label=f"gain over {baseline} (points),\npaired by seed")
    fig.suptitle("(α, β) grid: cell = mean gain [95% t-interval], mean final accuracy", fontsize=11)
    _save(fig, out)


def paper_figures(runs: pd.DataFrame, epochs: pd.DataFrame, baseline: str, claims: Sequence[Claim],
                  out: str | Path | Mapping[str, str | Path], *, treatment: str = compare.TREATMENT,
                  levels: Sequence[float] | Mapping[str, Sequence[float]] | None = None) -> list[Path]:
    """Every results figure as <name>.png and .pdf, names FIGURES and then GRID_FIGURE where the
    arms form an (alpha, beta) grid (compare.has_grid on the config tells in advance), to the
    files `out` maps those names to, or into the folder `out`. Every figure colours arms with one
    arm_colors() mapping. Returns the paths written."""
    names = list(FIGURES)
    if not compare.grid(runs, baseline).empty:
        names.append(GRID_FIGURE)
    if isinstance(out, (str, Path)):
        out = {f"{n}.{ext}": Path(out) / f"{n}.{ext}" for n in names for ext in ("png", "pdf")}
    missing = [f"{n}.{ext}" for n in names for ext in ("png", "pdf") if f"{n}.{ext}" not in out]
    if missing:
        raise ValueError(f"no output file given for {missing}")

    def files(name: str) -> list[Path]:
        return [Path(out[f"{name}.png"]), Path(out[f"{name}.pdf"])]

    colors = arm_colors(runs["arm"].unique(), baseline, treatment)
    final_accuracy(runs, files("final_accuracy"), baseline, treatment, colors)
    gain_forest(runs, claims, files("gain_forest"), baseline, treatment, colors)
    time_to_accuracy(runs, epochs, files("time_to_accuracy"), baseline, treatment, levels, colors)
    if GRID_FIGURE in names:
        grid_heatmap(runs, files(GRID_FIGURE), baseline)
    return [path for name in names for path in files(name)]


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


def attention_heatmaps(products: dict[str, Tensor], out: Outputs, title: str = "",
                       crop: int | None = 64) -> None:
    """The paper's Figure 1 layout: layers across, heads down, W_q^h W_k^h^T per head, and a
    bottom row of W_v W_proj per layer. Each product has one symmetric colour scale shared by
    all its panels (so depth trends are visible); `crop` keeps the top-left block."""
    sns.set_theme(context="paper", style="white", font_scale=1.1)  # the same look whatever was drawn before
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
    _save(fig, out)


def diagonal_profile(metrics: pd.DataFrame, out: Outputs, hue: str = "model") -> None:
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
            # Markers and dashes differ per line too: an init and its trained model can overlap.
            sns.lineplot(part, x="layer", y=metric, hue=hue, hue_order=order, style=hue, style_order=order,
                         markers=True, dashes=True, errorbar="sd", ax=ax, legend=row == 0 and col == 1)
            ax.axhline(0, color="0.3", lw=0.8)
            ax.set(xlabel="layer" if row else "", ylabel=label)
            if row == 0:
                ax.set_title(PRODUCT_LABELS[product] + (" (mean over heads)" if product == "qk" else ""))
    axes[0, 1].legend(title=None, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    layers = sorted(df["layer"].unique())
    axes[1, 0].set_xticks(layers if len(layers) <= 16 else layers[::2])
    fig.tight_layout()
    _save(fig, out)


def structure_comparison(sources: dict[str, dict[str, Tensor]], out: Outputs, title: str = "",
                         crop: int | None = 32) -> None:
    """Side by side, one column per source (e.g. pretrained, default init, mimetic init,
    trained from each): W_q^h W_k^h^T of head 1 and W_v W_proj at each source's first, middle
    and last layer (sources may differ in depth). They may also differ in scale by orders of
    magnitude, so each column has its own symmetric colour scale per product, printed under
    its name."""
    sns.set_theme(context="paper", style="white", font_scale=1.1)  # the same look whatever was drawn before
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
    _save(fig, out)
