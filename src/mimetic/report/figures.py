"""The results figures, one function per figure; each writes the files it is given (PNG, PDF:
by suffix). Each panel speaks its experiment's metric (compare.Metric): accuracy over epochs, or
validation loss (nats per token, lower is better) over steps, whose gain is baseline loss - arm
loss. The attention-structure figures are mimetic.report.structure_figures."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib.lines
import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mimetic.report import compare, outputs, stats
from mimetic.report._plot import Outputs, look, save
from mimetic.report.claims import SIGNS, Claim
from mimetic.report.render import time_unit


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


def paper_look():
    """The one look of the results figures (the structure figures have their own)."""
    return look("whitegrid", 1.15, {"axes.titlesize": 11, "axes.labelsize": 10.5, "legend.fontsize": 9.5})


def learning_curves(epochs: pd.DataFrame, out: Outputs, baseline: str = "default",
                    colors: dict[str, str] | None = None) -> None:
    """Each experiment's curve (test accuracy vs epoch; validation loss vs step for a language
    model), one panel per experiment, one line per arm: mean over seeds with a band of ± one
    standard deviation. Arms keep their arm_colors() colour."""
    with paper_look():
        colors = colors or arm_colors(epochs["arm"].unique(), baseline)
        experiments = sorted(epochs["experiment"].unique())
        fig, axes = plt.subplots(1, len(experiments), figsize=(4.5 * len(experiments), 3.6), squeeze=False)
        for ax, exp in zip(axes[0], experiments):
            m = compare.metric_of(epochs, exp)
            df = epochs[epochs["experiment"] == exp]
            n = df.groupby("arm")["seed"].nunique()
            order = [a for a in colors if a in n.index]
            sns.lineplot(df, x=m.x, y=m.curve, hue="arm", hue_order=order, palette=colors, errorbar="sd", ax=ax)
            ax.set(title=f"{exp} (mean ± sd over seeds)", xlabel=m.x, ylabel=m.label)
            ax.legend(title=None, labels=[f"{a} (n={n[a]})" for a in order],
                      handles=ax.get_legend().legend_handles)
        fig.tight_layout()
        save(fig, out)


# --- Results figures: accuracy, paired gains, time to accuracy, (alpha, beta) grid ------------

def _offsets(k: int, width: float = 0.5) -> np.ndarray:
    """k evenly spread horizontal positions in [-width/2, width/2]: seeds side by side, no
    random jitter, so the figure is the same on every run."""
    return np.zeros(1) if k == 1 else np.linspace(-width / 2, width / 2, k)


def final_accuracy(runs: pd.DataFrame, out: Outputs, baseline: str = "default",
                   treatment: str = compare.TREATMENT, colors: dict[str, str] | None = None,
                   metric: str | None = None) -> None:
    """Each experiment's final metric (`metric`, None: test accuracy or validation loss; one panel
    each, own y scale) per arm: every seed as a dot, the mean ± sd as a bar beside them; n per
    arm under its name. A panel whose metric differs from its left neighbour's names it."""
    with paper_look():
        colors = colors or arm_colors(runs["arm"].unique(), baseline, treatment)
        experiments = sorted(runs["experiment"].unique())
        arms_per = [compare.arm_order(runs.loc[runs["experiment"] == e, "arm"], baseline, treatment)
                    for e in experiments]
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
        labels = [compare.metric_of(runs, e).label_of(compare.column(runs, e, metric)) for e in experiments]
        for i, (ax, label) in enumerate(zip(axes[0], labels)):
            if i == 0 or label != labels[i - 1]:
                ax.set_ylabel(label)
        handles = [matplotlib.lines.Line2D([], [], ls="", marker="o", color="0.5", label="one seed"),
                   matplotlib.lines.Line2D([], [], ls="-", marker="_", markersize=14, color="0.15",
                                           label="mean ± sd over seeds")]
        fig.legend(handles=handles, loc="lower center", ncol=2, bbox_to_anchor=(0.5, 1.0), frameon=False)
        fig.tight_layout()
        save(fig, out)


def _forest_rows(runs: pd.DataFrame, claims: Sequence[Claim], baseline: str, treatment: str,
                 metric: str | None) -> list[dict]:
    """One row per claim, then per remaining (experiment, arm) vs the baseline, grouped by experiment."""
    main = compare.main(runs, baseline, claims, (), treatment, metric)
    rows = []
    for r in main.to_dict("records"):
        rows.append({**r, "arm": r["treatment"]})
    abl = compare.ablation(runs, baseline, treatment, metric)
    covered = {(r["experiment"], r["treatment"], r["baseline"]) for r in rows}
    for r in abl.to_dict("records"):
        if r["arm"] != baseline and (r["experiment"], r["arm"], baseline) not in covered:
            rows.append({**r, "treatment": r["arm"], "baseline": baseline, "claim": "", "claimed_gain": np.nan,
                         "claimed_direction": ""})
    order = list(dict.fromkeys(r["experiment"] for r in rows))
    return sorted(rows, key=lambda r: order.index(r["experiment"]))  # stable: claims first in each experiment


def _gain_axis(m: compare.Metric, col: str, arm: str, baseline: str) -> str:
    """'gain in final test accuracy (percentage points), treatment − baseline, paired by seed'."""
    better = "" if m.higher_is_better else f" (positive: {arm} better)"
    return f"gain in {m.name_of(col)} ({m.gain_words}), {m.gain_text(arm, baseline)}, paired by seed{better}"


def gain_forest(runs: pd.DataFrame, claims: Sequence[Claim], out: Outputs, baseline: str = "default",
                treatment: str = compare.TREATMENT, colors: dict[str, str] | None = None,
                metric: str | None = None) -> None:
    """The answer at a glance: per claim (and per other arm) the gain over the baseline paired by
    seed, its 95% t-interval, every seed's gain, the claimed gain as a marker (a claimed direction
    as a triangle at 0 pointing to its side), and the verdict. One panel per metric compared
    (own x scale and unit): accuracy gains and loss gains do not share an axis."""
    with paper_look():
        colors = colors or arm_colors(runs["arm"].unique(), baseline, treatment)
        rows = _forest_rows(runs, claims, baseline, treatment, metric)
        panels = {col: [r for r in rows if r["metric"] == col] for col in dict.fromkeys(r["metric"] for r in rows)}
        fig, axes = plt.subplots(len(panels), 1, squeeze=False, layout="constrained",
                                 figsize=(8.2, 0.62 * len(rows) + 1.9 + 0.9 * (len(panels) - 1)),
                                 gridspec_kw={"height_ratios": [len(p) for p in panels.values()]})
        for ax, (col, part) in zip(axes[:, 0], panels.items()):
            _forest_panel(ax, runs, part, colors)
            ax.set_xlabel(_gain_axis(compare.metric_named(col), col, "treatment", "baseline"))
        axes[0, 0].set_title("Paired gain over the baseline: mean and 95% t-interval (verdict at right)")
        handles = [matplotlib.lines.Line2D([], [], ls="-", lw=2.4, marker="o", markersize=7, color="0.45",
                                           markeredgecolor="black", markeredgewidth=0.6,
                                           label="mean gain, 95% t-interval"),
                   matplotlib.lines.Line2D([], [], ls="", marker="o", markersize=4, color="0.45", alpha=0.6,
                                           label="one seed"),
                   matplotlib.lines.Line2D([], [], ls="", marker="D", markersize=8, markerfacecolor="none",
                                           markeredgecolor="black", markeredgewidth=1.3, label="claimed gain")]
        if any(r["claimed_direction"] for r in rows):
            handles.append(matplotlib.lines.Line2D([], [], ls="", marker=">", markersize=9, markerfacecolor="none",
                                                   markeredgecolor="black", markeredgewidth=1.3,
                                                   label="claimed direction"))
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
        save(fig, out)


def _forest_panel(ax: plt.Axes, runs: pd.DataFrame, rows: list[dict], colors: dict[str, str]) -> None:
    ys = np.arange(len(rows))[::-1]
    labels, xs = [], [0.0]
    for y, r in zip(ys, rows):
        color = colors.get(r["treatment"], "0.4")
        n = r.get("gain_n")
        has = isinstance(n, (int, float)) and not np.isnan(n) and n > 0
        if has:
            d = compare.seed_gains(runs, r["experiment"], r["treatment"], r["baseline"], r["metric"])
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
        if r["claimed_direction"]:
            ax.plot(0.0, y, ">" if SIGNS[r["claimed_direction"]] > 0 else "<", markersize=10, markerfacecolor="none",
                    markeredgecolor="black", markeredgewidth=1.3, zorder=5)
        name = f"{r['experiment']}: {r['treatment']} vs {r['baseline']}"
        detail = (f"claim {r['claim']}, " if r["claim"] else "") + (f"n={int(n)}" if has else "no runs")
        labels.append(f"{name}\n{detail}")
        # What was measured stands out; "not run" and "too few seeds" recede (no interval to read).
        measured = has and not np.isnan(r["gain_t_lo"])
        ax.annotate(r["verdict"], xy=(1.0, y), xycoords=("axes fraction", "data"), xytext=(8, 0),
                    textcoords="offset points", va="center", ha="left", fontsize=9.5,
                    fontweight="bold" if measured else "normal", fontstyle="normal" if measured else "italic",
                    color="0.1" if measured else "0.5")
    ax.axvline(0, color="0.3", lw=0.9, ls="--", zorder=1)
    lo, hi = min(xs), max(xs)
    pad = 0.08 * (hi - lo or 1.0)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_yticks(ys, labels, fontsize=9)
    bounds = [i for i in range(1, len(rows)) if rows[i]["experiment"] != rows[i - 1]["experiment"]]
    for i in bounds:
        ax.axhline(ys[i] + 0.5, color="0.75", lw=0.8)
    ax.grid(axis="y", visible=False)


def arm_ranking(runs: pd.DataFrame, out: Outputs, baseline: str = "default", treatment: str = compare.TREATMENT,
                colors: dict[str, str] | None = None, metric: str | None = None) -> None:
    """Which init wins here: per experiment (one panel each, own x scale) every arm but the
    baseline, ranked by its mean gain over the baseline paired by seed (best on top), with its 95%
    t-interval and every seed's gain, in the experiment's gain unit. An arm without two pairs has no
    interval and ranks last."""
    with paper_look():
        colors = colors or arm_colors(runs["arm"].unique(), baseline, treatment)
        abl = compare.ablation(runs, baseline, treatment, metric)
        abl = abl[abl["arm"] != baseline]
        experiments = sorted(abl["experiment"].unique()) or sorted(runs["experiment"].unique())
        rows = max([1, *(int((abl["experiment"] == e).sum()) for e in experiments)])
        fig, axes = plt.subplots(1, len(experiments), squeeze=False, layout="constrained",
                                 figsize=(4.3 * len(experiments) + 1.2, 0.48 * rows + 1.6))
        for ax, exp in zip(axes[0], experiments):
            part = abl[abl["experiment"] == exp].sort_values("gain_mean", na_position="first", kind="stable")
            for y, r in enumerate(part.to_dict("records")):
                color = colors.get(r["arm"], "0.4")
                gains = compare.seed_gains(runs, exp, r["arm"], baseline, r["metric"])
                ax.scatter(gains, np.full(len(gains), y + 0.2), s=12, color=color, alpha=0.55, edgecolor="none",
                           zorder=3)
                if not np.isnan(r["gain_t_lo"]):
                    ax.plot([r["gain_t_lo"], r["gain_t_hi"]], [y, y], color=color, lw=2.6, solid_capstyle="butt",
                            zorder=3)
                if not np.isnan(r["gain_mean"]):
                    ax.plot(r["gain_mean"], y, "o", color=color, markersize=7, markeredgecolor="black",
                            markeredgewidth=0.6, zorder=4)
            ax.axvline(0, color="0.3", lw=0.9, ls="--", zorder=1)
            ax.set_yticks(range(len(part)), [f"{a} (n={int(n)})" for a, n in zip(part["arm"], part["gain_n"])])
            ax.set_ylim(-0.6, max(len(part), 1) - 0.4)
            ax.set_title(exp)
            m = compare.metric_of(runs, exp)
            rule = "" if m.higher_is_better else f",\n{m.gain_text('arm', baseline)}"
            ax.set_xlabel(f"gain over {baseline} ({m.gain_unit}{rule}), paired by seed")
            ax.grid(axis="y", visible=False)
        names = {compare.metric_of(runs, e).name_of(compare.column(runs, e, metric)) for e in experiments}
        what = names.pop() if len(names) == 1 else "each experiment's metric"
        fig.suptitle(f"Arms ranked by mean gain in {what}: mean and 95% t-interval, dots = seeds", fontsize=11)
        save(fig, out)


def _n_label(runs: pd.DataFrame, experiment: str) -> str:
    """'n=5 per arm', or each arm's n where they differ."""
    n = runs[runs["experiment"] == experiment].groupby("arm")["seed"].nunique()
    return f"n={n.iloc[0]} per arm" if n.nunique() == 1 else ", ".join(f"{a}: n={k}" for a, k in n.items())


def time_to_accuracy(runs: pd.DataFrame, epochs: pd.DataFrame, out: Outputs, baseline: str = "default",
                     treatment: str = compare.TREATMENT,
                     levels: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
                     colors: dict[str, str] | None = None) -> None:
    """Epochs (steps, for a language model: top row) and wall time (bottom row) for each arm to
    reach each target of its experiment's metric: the baseline's mean final value (accuracy, or
    validation loss from above) and fixed levels; one column per experiment. Dots: runs;
    marker and bar: mean ± sd over the runs that reach it; k/n at the right: runs that reach it,
    where not all do."""
    with paper_look():
        colors = colors or arm_colors(runs["arm"].unique(), baseline, treatment)
        goals = compare.targets(runs, baseline, levels)
        reached = compare.reach(runs, epochs, goals)
        experiments = list(dict.fromkeys(goals["experiment"]))
        if not experiments:
            raise ValueError("no targets: no experiment has a baseline run and no levels were given")
        unit, scale = time_unit(float(reached["wall_time"].max()))
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
            goal = goals[goals["experiment"] == exp].set_index("target")["target_value"]
            m = compare.metric_of(runs, exp)
            for row, (what, label, div) in enumerate((("at", f"{m.xs} to reach", 1.0),
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
                ax.set_yticks(range(len(tgts)), [f"{t}\n({m.text(goal[t], m.digits - 1)})"
                                                 if t == f"{baseline} final" else t for t in tgts])
                ax.set_ylim(len(tgts) - 0.5, -0.5)
                ax.set_xlabel(label)
                ax.grid(axis="y", visible=False)
                for b in np.arange(0.5, len(tgts) - 0.5):
                    ax.axhline(b, color="0.8", lw=0.7)
                if row == 0:
                    ax.set_title(f"{exp} ({_n_label(runs, exp)})")
                if col == 0 or m != compare.metric_of(runs, experiments[col - 1]):
                    ax.set_ylabel(f"target {m.name}")
        handles = [matplotlib.lines.Line2D([], [], ls="", marker="o", color=colors[a], markeredgecolor="black",
                                           markeredgewidth=0.5, label=a) for a in colors if a in set(runs["arm"])]
        fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 4), frameon=False)
        note = ("marker ± bar: mean ± sd over the runs that reach the target; dots: runs; "
                "k/n: runs that reach it, where not all do")
        # wrapped: with one experiment the figure is narrow
        fig.legend(handles=[], loc="outside lower center", frameon=False,
                   title=textwrap.fill(note, width=int(14 * fig.get_figwidth())), title_fontsize=9)
        save(fig, out)


def grid_heatmap(runs: pd.DataFrame, out: Outputs, baseline: str = "default",
                 metric: str | None = None) -> None:
    """Per (alpha, beta) grid (compare.grid): the mean gain over the baseline, paired by seed, as
    colour (diverging, 0 white; one scale per metric), each cell annotated with the gain, its 95%
    t-interval and the arm's mean value of the metric; cells without an arm are hatched."""
    with paper_look():
        g = compare.grid(runs, baseline, metric)
        if g.empty:
            raise ValueError("no (alpha, beta) grid among these arms")
        g = g.assign(alpha=[compare.axis_label(r, "alpha") for r in g.to_dict("records")],
                     beta=[compare.axis_label(r, "beta") for r in g.to_dict("records")])
        key = lambda s: [float(x) for x in s.split(" / ")] if s else []  # noqa: E731
        panels = list(g.groupby(["experiment", "group"], sort=True))
        # one symmetric scale for the panels of each metric, set by the mean gains (intervals would wash them out)
        limits = {col: float(np.nanmax(np.abs(part["gain_mean"].to_numpy()))) or 1.0
                  for col, part in g.groupby("metric")}
        sizes = [(len(p["beta"].unique()), len(p["alpha"].unique())) for _, p in panels]
        fig, axes = plt.subplots(1, len(panels), squeeze=False, layout="constrained",
                                 figsize=(sum(1.9 * w + 1.2 for w, _ in sizes) + 1.2,
                                          1.2 * max(h for _, h in sizes) + 1.8))
        images = {}
        for ax, ((exp, _), part) in zip(axes[0], panels):
            col = part["metric"].iloc[0]
            m, limit = compare.metric_named(col), limits[col]
            alphas, betas = sorted(part["alpha"].unique(), key=key), sorted(part["beta"].unique(), key=key)
            cells = np.full((len(alphas), len(betas)), np.nan)
            for r in part.to_dict("records"):
                i, j = alphas.index(r["alpha"]), betas.index(r["beta"])
                cells[i, j] = r["gain_mean"]
                d = m.digits
                text = f"{r['gain_mean']:+.{d}f}" + (f"\n[{r['gain_t_lo']:.{d}f}, {r['gain_t_hi']:.{d}f}]"
                                                     if not np.isnan(r["gain_t_lo"]) else "") + f"\n{m.text(r['mean'])}"
                dark = abs(r["gain_mean"]) > 0.6 * limit
                ax.text(j, i, text.replace("-", "\u2212"), ha="center", va="center", fontsize=8.5,
                        color="white" if dark else "black")
            for i, j in zip(*np.nonzero(np.isnan(cells))):
                ax.text(j, i, "not run", ha="center", va="center", fontsize=8.5, color="0.45")
            ax.add_patch(matplotlib.patches.Rectangle((-0.5, -0.5), len(betas), len(alphas), fill=False,
                                                      hatch="///", edgecolor="0.8", lw=0, zorder=0))
            im = ax.imshow(np.ma.masked_invalid(cells), cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
            images.setdefault(col, []).append((ax, im))
            ax.set_xticks(range(len(betas)), betas)
            ax.set_yticks(range(len(alphas)), alphas)
            ax.set_xlabel("β (Q/K / V/Proj)")
            ax.set_ylabel("α (Q/K / V/Proj)")
            ax.grid(False)
            fixed = ", ".join(f"{k}={v}" for k, v in json.loads(part["fixed_params"].iloc[0]).items())
            ns = sorted(set(part["n"]))
            ax.set_title(f"{exp}: {part['init'].iloc[0]}" + (f" ({fixed})" if fixed else "")
                         + f"\nn={'/'.join(map(str, ns))} seeds per cell", fontsize=10)
        for col, drawn in images.items():  # one colour bar per metric, beside its panels
            m = compare.metric_named(col)
            fig.colorbar(drawn[0][1], ax=[ax for ax, _ in drawn], shrink=0.9,
                         label=f"gain over {baseline} ({m.gain_unit}),\npaired by seed")
        names = {compare.metric_named(col).name_of(col) for col in images}
        what = names.pop() if len(names) == 1 else "value of its metric"
        fig.suptitle(f"(α, β) grid: cell = mean gain [95% t-interval], mean {what}", fontsize=11)
        save(fig, out)


def paper_figures(runs: pd.DataFrame, epochs: pd.DataFrame, baseline: str, claims: Sequence[Claim],
                  out: str | Path | Mapping[str, str | Path], *, treatment: str = compare.TREATMENT,
                  levels: Sequence[float] | Mapping[str, Sequence[float]] | None = None) -> list[Path]:
    """Every results figure in every format (outputs.figure_names, FIGURE_FORMATS: the grid's where
    the arms form an (alpha, beta) grid), to the files `out` maps '<name>.<ext>' to, or into the
    folder `out`. Every figure colours arms with one arm_colors() mapping. Returns the paths."""
    grid = not compare.grid(runs, baseline).empty
    if isinstance(out, (str, Path)):
        out = outputs.figure_files(out, grid)
    names = outputs.figure_names(grid)
    missing = [f"{n}.{ext}" for n in names for ext in outputs.FIGURE_FORMATS if f"{n}.{ext}" not in out]
    if missing:
        raise ValueError(f"no output file given for {missing}")

    def files(name: str) -> list[Path]:
        return [Path(out[f"{name}.{ext}"]) for ext in outputs.FIGURE_FORMATS]

    colors = arm_colors(runs["arm"].unique(), baseline, treatment)
    learning_curves(epochs, files("test_accuracy"), baseline=baseline, colors=colors)
    final_accuracy(runs, files("final_accuracy"), baseline, treatment, colors)
    gain_forest(runs, claims, files("gain_forest"), baseline, treatment, colors)
    arm_ranking(runs, files("arm_ranking"), baseline, treatment, colors)
    time_to_accuracy(runs, epochs, files("time_to_accuracy"), baseline, treatment, levels, colors)
    if grid:
        grid_heatmap(runs, files(outputs.GRID_FIGURE), baseline)
    return [path for name in names for path in files(name)]
