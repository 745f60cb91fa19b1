"""Run records -> comparisons between arms, as numeric DataFrames (tables and figures share them).

Inputs: `runs`, one row per run (experiment, arm, init, init_params, seed, final_test_acc,
best_test_acc, ...), and `epochs`, one row per run and epoch (experiment, arm, seed, epoch,
test_acc, wall_time cumulative in seconds). Every gain is treatment - baseline paired by seed,
in accuracy points; statistics come from mimetic.report.stats.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from mimetic.report import stats
from mimetic.report.claims import Claim, Reference
from mimetic.report.outputs import ALPHA_BETA, grid_groups

METRIC = "final_test_acc"
TREATMENT = "mimetic"
RUN_KEY = ["experiment", "arm", "seed"]


def check_runs(runs: pd.DataFrame, metric: str = METRIC) -> None:
    """ValueError unless `runs` has the key columns and the metric, one row per (experiment, arm, seed)."""
    missing = [c for c in RUN_KEY + [metric] if c not in runs.columns]
    if missing:
        raise ValueError(f"runs lack columns {missing}")
    dup = runs[runs.duplicated(RUN_KEY, keep=False)]
    if len(dup):
        raise ValueError(f"runs repeat (experiment, arm, seed): {dup[RUN_KEY].drop_duplicates().values.tolist()}")


def arm_order(arms: Iterable[str], baseline: str, treatment: str = TREATMENT) -> list[str]:
    """Baseline first, then the treatment, then the rest sorted: one order for every table and figure."""
    arms = set(arms)
    first = list(dict.fromkeys(a for a in (baseline, treatment) if a in arms))
    return first + sorted(arms - set(first))


def _gain_columns(g: stats.Paired | None, prefix: str = "gain") -> dict[str, float]:
    if g is None:
        return {f"{prefix}_{k}": math.nan for k in ("n", "mean", "sd", "t_lo", "t_hi", "boot_lo", "boot_hi", "p")}
    return {f"{prefix}_n": g.n, f"{prefix}_mean": g.mean, f"{prefix}_sd": g.sd, f"{prefix}_t_lo": g.t_lo,
            f"{prefix}_t_hi": g.t_hi, f"{prefix}_boot_lo": g.boot_lo, f"{prefix}_boot_hi": g.boot_hi,
            f"{prefix}_p": g.p}


def values(runs: pd.DataFrame, experiment: str, arm: str, metric: str = METRIC) -> pd.Series:
    """The metric of one experiment and arm, indexed by seed (empty when not run)."""
    sub = runs[(runs["experiment"] == experiment) & (runs["arm"] == arm)]
    return sub.set_index("seed")[metric].sort_index()


def paired_gain(runs: pd.DataFrame, experiment: str, treatment: str, baseline: str,
                metric: str = METRIC) -> tuple[stats.Paired | None, list]:
    """(statistics of treatment - baseline over the seeds both ran, those seeds); None when either
    arm (or the experiment) was not run."""
    t, b = values(runs, experiment, treatment, metric), values(runs, experiment, baseline, metric)
    if t.empty or b.empty:
        return None, []
    seeds = sorted(t.index.intersection(b.index))
    return stats.paired(t[seeds].to_numpy(), b[seeds].to_numpy()), seeds


def _arm_stats(runs: pd.DataFrame, experiment: str, arm: str, prefix: str, metric: str) -> dict[str, float]:
    s = stats.summary(values(runs, experiment, arm, metric).to_numpy())
    return {f"{prefix}_n": s.n, f"{prefix}_mean": s.mean, f"{prefix}_sd": s.sd}


def published(references: Sequence[Reference], experiment: str, arms: Sequence[str], compact: bool = False) -> str:
    """Published accuracies of `experiment` for `arms`, one reference per line, arms a source lacks
    as '–'. Full: 'cs5782-cifar10: default 87.79 ± 0.38 (n=3) → mimetic 90.92 ± 0.46 (n=3)';
    compact: '87.79 → 90.92 (cs5782-cifar10)'. The paper's own numbers are marked as such."""
    lines = []
    for r in references:
        if r.experiment != experiment:
            continue
        own = (", paper's own" if r.origin == "paper" else "") + (", secondary" if r.secondary else "")
        parts = []
        for arm in arms:
            a = r.arms.get(arm)
            if compact:
                parts.append("\u2013" if a is None else f"{a.mean:.2f}")
                continue
            text = "\u2013" if a is None else f"{a.mean:.2f}" + ("" if a.sd is None else f" ± {a.sd:.2f}") + (
                "" if a.n is None else f" (n={a.n})")
            parts.append(f"{arm} {text}")
        lines.append(" → ".join(parts) + f" ({r.id}{own})" if compact else f"{r.id}{own}: " + " → ".join(parts))
    return "\n".join(lines)


def main(runs: pd.DataFrame, baseline: str, claims: Sequence[Claim] = (), references: Sequence[Reference] = (),
         treatment: str = TREATMENT, metric: str = METRIC) -> pd.DataFrame:
    """One row per claim, and one per run experiment without a claim (treatment vs `baseline`):
    both arms' accuracy, the paired gain, the claimed gain and the verdict, published numbers.

    Experiments come sorted, then claims on experiments that were not run (verdict 'not run')."""
    check_runs(runs, metric)
    run_exps = sorted(runs["experiment"].unique())
    exps = run_exps + list(dict.fromkeys(c.experiment for c in claims if c.experiment not in run_exps))
    rows = []
    for exp in exps:
        comparisons = [c for c in claims if c.experiment == exp] or [None]
        for c in comparisons:
            base, treat = (c.baseline, c.treatment) if c else (baseline, treatment)
            m = c.metric if c else metric
            gain, seeds = paired_gain(runs, exp, treat, base, m)
            rows.append({"experiment": exp, "claim": c.id if c else "", "baseline": base, "treatment": treat,
                         "metric": m, **_arm_stats(runs, exp, base, "baseline", m),
                         **_arm_stats(runs, exp, treat, "treatment", m), **_gain_columns(gain),
                         "seeds": " ".join(map(str, seeds)), "claimed_gain": c.gain if c else math.nan,
                         "verdict": stats.verdict(gain, c.gain if c else None),
                         "published": published(references, exp, [base, treat])})
    return pd.DataFrame(rows, columns=_MAIN_COLUMNS)


_MAIN_COLUMNS = ["experiment", "claim", "baseline", "treatment", "metric", "baseline_n", "baseline_mean",
                 "baseline_sd", "treatment_n", "treatment_mean", "treatment_sd",
                 *_gain_columns(None), "seeds", "claimed_gain", "verdict", "published"]


def verdicts(main_df: pd.DataFrame, claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per claim: the main table's numbers beside the claim's quote and source."""
    by_id = main_df.set_index("claim")
    rows = []
    for c in claims:
        r = by_id.loc[c.id]
        rows.append({"claim": c.id, "experiment": c.experiment, "baseline": c.baseline, "treatment": c.treatment,
                     "metric": c.metric, "claimed_gain": c.gain,
                     **{k: r[k] for k in _gain_columns(None)}, "verdict": r["verdict"],
                     "quote": c.quote, "source": c.source, "url": c.url or "", "note": c.note or ""})
    columns = ["claim", "experiment", "baseline", "treatment", "metric", "claimed_gain", *_gain_columns(None),
               "verdict", "quote", "source", "url", "note"]
    return pd.DataFrame(rows, columns=columns)


def _params(runs: pd.DataFrame) -> pd.Series:
    # Run records from before init_params existed (and `default`) have none: '{}'.
    if "init_params" not in runs.columns:
        return pd.Series("{}", index=runs.index)
    # canonical JSON; parameters given as dicts (straight from summary.json) are made so here
    return runs["init_params"].map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, dict)
                                   else "{}" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))


def arms_of(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (experiment, arm): init and init_params (canonical JSON)."""
    df = runs.assign(init=runs["init"] if "init" in runs.columns else runs["arm"], init_params=_params(runs))
    info = df.groupby(["experiment", "arm"], sort=True)[["init", "init_params"]].agg(lambda s: sorted(set(s)))
    bad = info[(info["init"].str.len() > 1) | (info["init_params"].str.len() > 1)]
    if len(bad):
        raise ValueError(f"arms whose runs differ in init or parameters: {bad.index.tolist()}")
    return info.map(lambda v: v[0]).reset_index()


def ablation(runs: pd.DataFrame, baseline: str, treatment: str = TREATMENT, metric: str = METRIC) -> pd.DataFrame:
    """Every arm of every experiment: its accuracy over seeds (n, the seeds, mean, sd, min, max; the
    best epoch's accuracy, mean) and, for all but the baseline, the gain over the baseline paired
    by seed with its verdict (no claim: 'significant gain' or not)."""
    check_runs(runs, metric)
    info = arms_of(runs).set_index(["experiment", "arm"])
    rows = []
    for exp in sorted(runs["experiment"].unique()):
        for arm in arm_order(runs.loc[runs["experiment"] == exp, "arm"], baseline, treatment):
            v = values(runs, exp, arm, metric)
            s = stats.summary(v.to_numpy())
            best = values(runs, exp, arm, "best_test_acc") if "best_test_acc" in runs.columns else v[:0]
            gain = None if arm == baseline else paired_gain(runs, exp, arm, baseline, metric)[0]
            rows.append({"experiment": exp, "arm": arm, "init": info.loc[(exp, arm), "init"],
                         "init_params": info.loc[(exp, arm), "init_params"], "n": s.n,
                         "seeds": " ".join(map(str, v.index)), "mean": s.mean, "sd": s.sd, "min": v.min(),
                         "max": v.max(), "best_mean": best.mean() if len(best) else math.nan,
                         **_gain_columns(gain),
                         "verdict": "baseline" if arm == baseline else stats.verdict(gain, None)})
    return pd.DataFrame(rows)


# --- (alpha, beta) grid -----------------------------------------------------------------------

def grid(runs: pd.DataFrame, baseline: str, metric: str = METRIC) -> pd.DataFrame:
    """One row per arm in an (alpha, beta) grid (see grid_groups) per experiment: its alpha and
    beta values, accuracy over seeds and paired gain over `baseline`. Empty when there is no grid."""
    check_runs(runs, metric)
    info = arms_of(runs)
    rows = []
    for exp, part in info.groupby("experiment", sort=True):
        arms = {r.arm: (r.init, json.loads(r.init_params)) for r in part.itertuples() if r.arm != baseline}
        for group, labels in enumerate(grid_groups(arms)):
            for arm in labels:
                init, params = arms[arm]
                s = stats.summary(values(runs, exp, arm, metric).to_numpy())
                gain = paired_gain(runs, exp, arm, baseline, metric)[0]
                fixed = {k: v for k, v in params.items() if k not in ALPHA_BETA}
                rows.append({"experiment": exp, "group": group, "init": init,
                             "fixed_params": json.dumps(fixed, sort_keys=True),
                             **{k: params.get(k, math.nan) for k in ALPHA_BETA}, "arm": arm,
                             "n": s.n, "mean": s.mean, "sd": s.sd, **_gain_columns(gain),
                             "verdict": stats.verdict(gain, None)})
    columns = ["experiment", "group", "init", "fixed_params", *ALPHA_BETA, "arm", "n", "mean", "sd",
               *_gain_columns(None), "verdict"]
    return pd.DataFrame(rows, columns=columns)


def axis_label(row: Mapping, which: str) -> str:
    """'0.7 / 0.4' for (alpha1, alpha2) (Q/K / V/Proj); one number where the init has one."""
    vals = [row[f"{which}{i}"] for i in (1, 2)]
    vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return " / ".join(f"{v:g}" for v in vals)


# --- Time to accuracy -------------------------------------------------------------------------

def default_levels(baseline_final: float) -> list[float]:
    """The two highest multiples of 10 (accuracy %) below the baseline's mean final accuracy."""
    top = math.ceil(baseline_final / 10) * 10 - 10
    return [float(v) for v in (top - 10, top) if v > 0]


def targets(runs: pd.DataFrame, baseline: str, levels: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
            metric: str = METRIC) -> pd.DataFrame:
    """Per experiment the accuracies to reach: the baseline's mean final accuracy ('baseline
    final') and fixed `levels` (per experiment when a mapping; None: default_levels)."""
    rows = []
    for exp in sorted(runs["experiment"].unique()):
        base = values(runs, exp, baseline, metric)
        if not base.empty:
            rows.append({"experiment": exp, "target": f"{baseline} final", "target_acc": float(base.mean())})
        lv = levels.get(exp, []) if isinstance(levels, Mapping) else levels
        if lv is None:
            lv = default_levels(float(base.mean())) if not base.empty else []
        rows += [{"experiment": exp, "target": f"{v:g}%", "target_acc": float(v)} for v in sorted(lv)]
    return pd.DataFrame(rows, columns=["experiment", "target", "target_acc"])


def reach(runs: pd.DataFrame, epochs: pd.DataFrame, goals: pd.DataFrame) -> pd.DataFrame:
    """Per run and target: the first epoch whose test accuracy >= the target, and the cumulative
    wall time (s) at its end; NaN where the run never reaches it."""
    rows = []
    for g in goals.itertuples():
        exp_runs = runs[runs["experiment"] == g.experiment]
        ep = epochs[epochs["experiment"] == g.experiment].sort_values("epoch")
        hit = ep[ep["test_acc"] >= g.target_acc].groupby(["arm", "seed"]).first()
        for r in exp_runs.itertuples():
            first = hit.loc[(r.arm, r.seed)] if (r.arm, r.seed) in hit.index else None
            rows.append({"experiment": g.experiment, "target": g.target, "target_acc": g.target_acc, "arm": r.arm,
                         "seed": r.seed, "epoch": math.nan if first is None else float(first["epoch"]),
                         "wall_time": math.nan if first is None else float(first["wall_time"])})
    return pd.DataFrame(rows, columns=["experiment", "target", "target_acc", "arm", "seed", "epoch", "wall_time"])


def time_to_accuracy(reached: pd.DataFrame, baseline: str, treatment: str = TREATMENT) -> pd.DataFrame:
    """Per experiment, target and arm: runs that reach it, epochs and wall time to it (mean, sd
    over those runs), and paired by seed with the baseline (seeds where both reach it): the
    difference arm - baseline in epochs and seconds (mean, t-interval) and the speed-up, baseline
    epochs / arm epochs (ratio of the paired means)."""
    rows = []
    for (exp, target), part in reached.groupby(["experiment", "target"], sort=False):
        base = part[part["arm"] == baseline].set_index("seed")
        for arm in arm_order(part["arm"], baseline, treatment):
            mine = part[part["arm"] == arm].set_index("seed")
            ok = mine.dropna(subset=["epoch"])
            ep, wt = stats.summary(ok["epoch"].to_numpy()), stats.summary(ok["wall_time"].to_numpy())
            row = {"experiment": exp, "target": target, "target_acc": part["target_acc"].iloc[0], "arm": arm,
                   "n": len(mine), "reached": len(ok), "epochs_mean": ep.mean, "epochs_sd": ep.sd,
                   "wall_time_mean": wt.mean, "wall_time_sd": wt.sd}
            if arm != baseline and not base.empty:
                both = ok.index.intersection(base.dropna(subset=["epoch"]).index).sort_values()
                de = stats.paired(ok.loc[both, "epoch"].to_numpy(), base.loc[both, "epoch"].to_numpy())
                dw = stats.paired(ok.loc[both, "wall_time"].to_numpy(), base.loc[both, "wall_time"].to_numpy())
                speedup = (base.loc[both, "epoch"].mean() / ok.loc[both, "epoch"].mean()) if len(both) else math.nan
                row.update({"pairs": len(both), "d_epochs_mean": de.mean, "d_epochs_t_lo": de.t_lo,
                            "d_epochs_t_hi": de.t_hi, "d_wall_time_mean": dw.mean, "d_wall_time_t_lo": dw.t_lo,
                            "d_wall_time_t_hi": dw.t_hi, "speedup": speedup})
            rows.append(row)
    columns = ["experiment", "target", "target_acc", "arm", "n", "reached", "epochs_mean", "epochs_sd",
               "wall_time_mean", "wall_time_sd", "pairs", "d_epochs_mean", "d_epochs_t_lo", "d_epochs_t_hi",
               "d_wall_time_mean", "d_wall_time_t_lo", "d_wall_time_t_hi", "speedup"]
    return pd.DataFrame(rows).reindex(columns=columns)


def references_frame(references: Sequence[Reference]) -> pd.DataFrame:
    """One row per published result and arm: id, origin, experiment, setting, arm, mean, sd, n, source."""
    rows = [{"id": r.id, "origin": r.origin, "experiment": r.experiment, "setting": r.setting, "arm": arm,
             "mean": a.mean, "sd": np.nan if a.sd is None else a.sd, "n": a.n, "source": r.source,
             "url": r.url or "", "note": r.note or ""}
            for r in references for arm, a in r.arms.items()]
    return pd.DataFrame(rows, columns=["id", "origin", "experiment", "setting", "arm", "mean", "sd", "n", "source",
                                       "url", "note"])
