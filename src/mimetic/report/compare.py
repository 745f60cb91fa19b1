"""Run records -> comparisons between arms, as numeric DataFrames (tables and figures share them).

Inputs: `runs`, one row per run (experiment, arm, kind, init, init_params, seed, and its kind's
metrics: final_test_acc, best_test_acc, ... for image classification; final_val_loss,
best_val_loss, ... for language models), and `epochs`, one row per run and evaluation (its
kind's curve over epoch or step, wall_time cumulative in seconds). What each kind is measured by
is its `Metric` (METRICS). Every gain is paired by seed and oriented so that positive means the
arm is better: treatment - baseline in accuracy points, baseline - treatment in nats per token
for a loss (Metric.oriented); statistics come from mimetic.report.stats.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mimetic.report import stats
from mimetic.report.claims import Claim, Reference
from mimetic.report.outputs import ALPHA_BETA, grid_groups

TREATMENT = "mimetic"
RUN_KEY = ["experiment", "arm", "seed"]


@dataclass(frozen=True)
class Metric:
    """What one kind of experiment is measured by: its columns in runs.csv (final, best) and in
    epochs.csv (curve, over x), how people read it, and which way is better."""

    kind: str  # the runs' `kind` (mimetic.report.records.KINDS)
    task: str
    final: str
    best: str
    curve: str
    x: str  # the curve's progress column: "epoch" or "step"
    name: str
    short: str  # the name in a narrow table header
    unit: str
    hint: str  # after the unit, where the reading is not the obvious one
    gain_unit: str  # a gain's unit in axis labels and headers
    gain_words: str  # ... and in sentences
    gain_rule: str  # what a gain is, with {arm} and {baseline}
    higher_is_better: bool
    digits: int  # decimals that tell arms apart

    @property
    def label(self) -> str:
        """The curve's axis label: 'test accuracy (%)'."""
        return f"{self.name} ({self.unit}{self.hint})"

    def name_of(self, column: str) -> str:
        """'final test accuracy', 'best validation loss'."""
        return f"{'best' if column == self.best else 'final'} {self.name}"

    def label_of(self, column: str) -> str:
        """'final test accuracy (%)', 'best validation loss (nats/token; lower is better)'."""
        return f"{self.name_of(column)} ({self.unit}{self.hint})"

    @property
    def xs(self) -> str:
        return f"{self.x}s"

    def text(self, value: float, digits: int | None = None) -> str:
        """One value with its unit: '80.50%', '1.234 nats/token'."""
        return f"{value:.{self.digits if digits is None else digits}f}{'' if self.unit == '%' else ' '}{self.unit}"

    def level(self, value: float) -> str:
        """A fixed target's label: '70%', '2.5 nats/token'."""
        return f"{value:g}{'' if self.unit == '%' else ' '}{self.unit}"

    def gain_text(self, arm: str = "arm", baseline: str = "baseline") -> str:
        return self.gain_rule.format(arm=arm, baseline=baseline)

    def oriented(self, values):  # noqa: ANN001, ANN201 - numbers, arrays and Series alike
        """`values` signed so that larger is better: a gain of oriented values is positive when the arm is better."""
        return values if self.higher_is_better else -values

    def reached(self, values: pd.Series, target: float) -> pd.Series:
        """Whether each value is at the target or better."""
        return values >= target if self.higher_is_better else values <= target


ACCURACY = Metric(kind="vision", task="image classification", final="final_test_acc", best="best_test_acc",
                  curve="test_acc", x="epoch", name="test accuracy", short="acc", unit="%", hint="",
                  gain_unit="points", gain_words="percentage points", gain_rule="{arm} − {baseline}",
                  higher_is_better=True, digits=2)
VAL_LOSS = Metric(kind="lm", task="language models", final="final_val_loss", best="best_val_loss",
                  curve="val_loss", x="step", name="validation loss", short="loss", unit="nats/token",
                  hint="; lower is better", gain_unit="nats/token", gain_words="nats per token",
                  gain_rule="{baseline} loss − {arm} loss", higher_is_better=False, digits=3)
METRICS = {m.kind: m for m in (ACCURACY, VAL_LOSS)}


def metric_named(column: str) -> Metric:
    """The metric whose final or best column `column` is (a claim names its column)."""
    for m in METRICS.values():
        if column in (m.final, m.best):
            return m
    raise ValueError(f"{column!r} is no metric; known: {[c for m in METRICS.values() for c in (m.final, m.best)]}")


def metric_of(frame: pd.DataFrame, experiment: str) -> Metric:
    """The metric of an experiment, from its rows' `kind` (runs.csv or epochs.csv)."""
    if "kind" not in frame.columns:
        raise ValueError("the run tables lack column 'kind': they come from an older `mimetic aggregate`; "
                         "aggregate the run records again")
    kinds = sorted(set(frame.loc[frame["experiment"] == experiment, "kind"]))
    if len(kinds) != 1:
        raise ValueError(f"experiment {experiment!r} has runs of kinds {kinds}: one kind per experiment")
    if kinds[0] not in METRICS:
        raise ValueError(f"experiment {experiment!r}: unknown kind {kinds[0]!r}; known: {list(METRICS)}")
    return METRICS[kinds[0]]


def column(runs: pd.DataFrame, experiment: str, metric: str | None = None) -> str:
    """The runs column an experiment is compared on: `metric` (its metric's final or best
    column) or, for None, its metric's final column."""
    m = metric_of(runs, experiment)
    if metric is None:
        return m.final
    if metric not in (m.final, m.best):
        raise ValueError(f"experiment {experiment!r} ({m.kind} runs) is not measured by {metric!r}: "
                         f"use {m.final} or {m.best}")
    return metric


def check_runs(runs: pd.DataFrame, metric: str | None = None) -> None:
    """ValueError unless `runs` has the key columns, one kind per experiment with its metric's
    column (`metric` or the final one), and one row per (experiment, arm, seed)."""
    missing = [c for c in RUN_KEY + ["kind"] if c not in runs.columns]
    if missing:
        raise ValueError(f"runs lack columns {missing}")
    for exp in runs["experiment"].unique():
        col = column(runs, exp, metric)
        if col not in runs.columns:
            raise ValueError(f"runs lack column {col!r} of experiment {exp!r}")
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


def values(runs: pd.DataFrame, experiment: str, arm: str, metric: str | None = None) -> pd.Series:
    """The metric (see column) of one experiment and arm as measured, indexed by seed (empty when not run)."""
    sub = runs[(runs["experiment"] == experiment) & (runs["arm"] == arm)]
    if sub.empty:
        return pd.Series(dtype=float)
    return sub.set_index("seed")[column(runs, experiment, metric)].sort_index()


def paired_gain(runs: pd.DataFrame, experiment: str, treatment: str, baseline: str,
                metric: str | None = None) -> tuple[stats.Paired | None, list]:
    """(statistics of the treatment's gain over the baseline over the seeds both ran, those
    seeds); None when either arm (or the experiment) was not run. The gain is oriented
    (Metric.oriented): treatment - baseline for accuracy, baseline - treatment for a loss."""
    t, b = values(runs, experiment, treatment, metric), values(runs, experiment, baseline, metric)
    if t.empty or b.empty:
        return None, []
    m = metric_of(runs, experiment)
    seeds = sorted(t.index.intersection(b.index))
    return stats.paired(m.oriented(t[seeds].to_numpy()), m.oriented(b[seeds].to_numpy())), seeds


def seed_gains(runs: pd.DataFrame, experiment: str, treatment: str, baseline: str,
               metric: str | None = None) -> pd.Series:
    """Each seed's gain as paired_gain orients it, over the seeds both arms ran (empty if either did not)."""
    t, b = values(runs, experiment, treatment, metric), values(runs, experiment, baseline, metric)
    if t.empty or b.empty:
        return pd.Series(dtype=float)
    m = metric_of(runs, experiment)
    return (m.oriented(t) - m.oriented(b)).dropna()


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


def _claim_column(runs: pd.DataFrame, c: Claim, run: bool) -> str:
    if not run:
        metric_named(c.metric)  # a claim on an experiment not run still names a known metric
        return c.metric
    try:
        return column(runs, c.experiment, c.metric)
    except ValueError as e:
        raise ValueError(f"claim {c.id}: {e}") from None


def main(runs: pd.DataFrame, baseline: str, claims: Sequence[Claim] = (), references: Sequence[Reference] = (),
         treatment: str = TREATMENT, metric: str | None = None) -> pd.DataFrame:
    """One row per claim, and one per run experiment without a claim (treatment vs `baseline`,
    on `metric`, None: each experiment's final metric): both arms' values of the metric (column
    `metric`), the paired gain, the claimed gain or direction and the verdict, published numbers.

    Experiments come sorted, then claims on experiments that were not run (verdict 'not run')."""
    check_runs(runs, metric)
    run_exps = sorted(runs["experiment"].unique())
    exps = run_exps + list(dict.fromkeys(c.experiment for c in claims if c.experiment not in run_exps))
    rows = []
    for exp in exps:
        comparisons = [c for c in claims if c.experiment == exp] or [None]
        for c in comparisons:
            base, treat = (c.baseline, c.treatment) if c else (baseline, treatment)
            m = _claim_column(runs, c, exp in run_exps) if c else column(runs, exp, metric)
            gain, seeds = paired_gain(runs, exp, treat, base, m)
            claimed = c.gain if c and c.gain is not None else math.nan
            rows.append({"experiment": exp, "claim": c.id if c else "", "baseline": base, "treatment": treat,
                         "metric": m, **_arm_stats(runs, exp, base, "baseline", m),
                         **_arm_stats(runs, exp, treat, "treatment", m), **_gain_columns(gain),
                         "seeds": " ".join(map(str, seeds)), "claimed_gain": claimed,
                         "claimed_direction": (c.direction or "") if c else "",
                         "verdict": stats.verdict(gain, c.gain, c.sign) if c else stats.verdict(gain),
                         "published": published(references, exp, [base, treat])})
    return pd.DataFrame(rows, columns=_MAIN_COLUMNS)


_MAIN_COLUMNS = ["experiment", "claim", "baseline", "treatment", "metric", "baseline_n", "baseline_mean",
                 "baseline_sd", "treatment_n", "treatment_mean", "treatment_sd",
                 *_gain_columns(None), "seeds", "claimed_gain", "claimed_direction", "verdict", "published"]


def verdicts(main_df: pd.DataFrame, claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per claim: the main table's numbers beside the claim's quote and source."""
    by_id = main_df.set_index("claim")
    rows = []
    for c in claims:
        r = by_id.loc[c.id]
        rows.append({"claim": c.id, "experiment": c.experiment, "baseline": c.baseline, "treatment": c.treatment,
                     "metric": c.metric, "claimed_gain": r["claimed_gain"],
                     "claimed_direction": r["claimed_direction"],
                     **{k: r[k] for k in _gain_columns(None)}, "verdict": r["verdict"],
                     "quote": c.quote, "source": c.source, "url": c.url or "", "note": c.note or ""})
    columns = ["claim", "experiment", "baseline", "treatment", "metric", "claimed_gain", "claimed_direction",
               *_gain_columns(None), "verdict", "quote", "source", "url", "note"]
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


def ablation(runs: pd.DataFrame, baseline: str, treatment: str = TREATMENT,
             metric: str | None = None) -> pd.DataFrame:
    """Every arm of every experiment: its metric over seeds (column `metric`; n, the seeds, mean,
    sd, min, max; the mean of its best value over training) and, for all but the baseline, the
    gain over the baseline paired by seed with its verdict (no claim: 'significant gain' or not)."""
    check_runs(runs, metric)
    info = arms_of(runs).set_index(["experiment", "arm"])
    rows = []
    for exp in sorted(runs["experiment"].unique()):
        col, best_col = column(runs, exp, metric), metric_of(runs, exp).best
        for arm in arm_order(runs.loc[runs["experiment"] == exp, "arm"], baseline, treatment):
            v = values(runs, exp, arm, col)
            s = stats.summary(v.to_numpy())
            best = values(runs, exp, arm, best_col)
            gain = None if arm == baseline else paired_gain(runs, exp, arm, baseline, col)[0]
            rows.append({"experiment": exp, "arm": arm, "metric": col, "init": info.loc[(exp, arm), "init"],
                         "init_params": info.loc[(exp, arm), "init_params"], "n": s.n,
                         "seeds": " ".join(map(str, v.index)), "mean": s.mean, "sd": s.sd, "min": v.min(),
                         "max": v.max(), "best_mean": best.mean(),
                         **_gain_columns(gain),
                         "verdict": "baseline" if arm == baseline else stats.verdict(gain)})
    return pd.DataFrame(rows)


# --- (alpha, beta) grid -----------------------------------------------------------------------

def grid(runs: pd.DataFrame, baseline: str, metric: str | None = None) -> pd.DataFrame:
    """One row per arm in an (alpha, beta) grid (see grid_groups) per experiment: its alpha and
    beta values, its metric over seeds (column `metric`) and paired gain over `baseline`. Empty
    when there is no grid."""
    check_runs(runs, metric)
    info = arms_of(runs)
    rows = []
    for exp, part in info.groupby("experiment", sort=True):
        arms = {r.arm: (r.init, json.loads(r.init_params)) for r in part.itertuples() if r.arm != baseline}
        for group, labels in enumerate(grid_groups(arms)):
            for arm in labels:
                init, params = arms[arm]
                col = column(runs, exp, metric)
                s = stats.summary(values(runs, exp, arm, col).to_numpy())
                gain = paired_gain(runs, exp, arm, baseline, col)[0]
                fixed = {k: v for k, v in params.items() if k not in ALPHA_BETA}
                rows.append({"experiment": exp, "group": group, "metric": col, "init": init,
                             "fixed_params": json.dumps(fixed, sort_keys=True),
                             **{k: params.get(k, math.nan) for k in ALPHA_BETA}, "arm": arm,
                             "n": s.n, "mean": s.mean, "sd": s.sd, **_gain_columns(gain),
                             "verdict": stats.verdict(gain)})
    columns = ["experiment", "group", "metric", "init", "fixed_params", *ALPHA_BETA, "arm", "n", "mean", "sd",
               *_gain_columns(None), "verdict"]
    return pd.DataFrame(rows, columns=columns)


def axis_label(row: Mapping, which: str) -> str:
    """'0.7 / 0.4' for (alpha1, alpha2) (Q/K / V/Proj); one number where the init has one."""
    vals = [row[f"{which}{i}"] for i in (1, 2)]
    vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return " / ".join(f"{v:g}" for v in vals)


# --- Time to accuracy (to a target value of the metric) ----------------------------------------

def default_levels(baseline_final: float) -> list[float]:
    """The two highest multiples of 10 (accuracy %) below the baseline's mean final accuracy."""
    top = math.ceil(baseline_final / 10) * 10 - 10
    return [float(v) for v in (top - 10, top) if v > 0]


def targets(runs: pd.DataFrame, baseline: str, levels: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
            metric: str | None = None) -> pd.DataFrame:
    """Per experiment the values of its metric to reach: the baseline's mean final value ('baseline
    final': of `metric`, None: the final column) and fixed `levels` in the metric's unit (per
    experiment when a mapping; one list only for experiments of one metric; None: default_levels
    for accuracy, none for a loss, whose scale depends on the text and tokenizer)."""
    experiments = sorted(runs["experiment"].unique())
    kinds = {metric_of(runs, exp).kind for exp in experiments}
    if levels is not None and not isinstance(levels, Mapping) and len(levels) and len(kinds) > 1:
        raise ValueError(f"levels {list(levels)} for experiments of kinds {sorted(kinds)}: their metrics differ; "
                         "give levels per experiment (experiment -> levels)")
    rows = []
    for exp in experiments:
        m = metric_of(runs, exp)
        base = values(runs, exp, baseline, metric)
        if not base.empty:
            rows.append({"experiment": exp, "target": f"{baseline} final", "target_value": float(base.mean())})
        lv = levels.get(exp, []) if isinstance(levels, Mapping) else levels
        if lv is None:
            lv = default_levels(float(base.mean())) if m is ACCURACY and not base.empty else []
        rows += [{"experiment": exp, "target": m.level(v), "target_value": float(v)} for v in sorted(lv)]
    return pd.DataFrame(rows, columns=["experiment", "target", "target_value"])


def reach(runs: pd.DataFrame, epochs: pd.DataFrame, goals: pd.DataFrame) -> pd.DataFrame:
    """Per run and target: `at`, the first evaluation (epoch or step: column `x`) whose value of
    the experiment's curve is at the target or better (Metric.reached), and the cumulative wall
    time (s) then; NaN where the run never reaches it."""
    rows = []
    for g in goals.itertuples():
        m = metric_of(runs, g.experiment)
        exp_runs = runs[runs["experiment"] == g.experiment]
        ep = epochs[epochs["experiment"] == g.experiment].sort_values(m.x)
        hit = ep[m.reached(ep[m.curve], g.target_value)].groupby(["arm", "seed"]).first()
        for r in exp_runs.itertuples():
            first = hit.loc[(r.arm, r.seed)] if (r.arm, r.seed) in hit.index else None
            rows.append({"experiment": g.experiment, "target": g.target, "target_value": g.target_value,
                         "arm": r.arm, "seed": r.seed, "x": m.x, "at": math.nan if first is None else float(first[m.x]),
                         "wall_time": math.nan if first is None else float(first["wall_time"])})
    return pd.DataFrame(rows, columns=["experiment", "target", "target_value", "arm", "seed", "x", "at", "wall_time"])


def time_to_accuracy(reached: pd.DataFrame, baseline: str, treatment: str = TREATMENT) -> pd.DataFrame:
    """Per experiment, target and arm: runs that reach it, epochs or steps (`x`) and wall time to
    it (at_*, wall_time_*: mean, sd over those runs), and paired by seed with the baseline (seeds
    where both reach it): the difference arm - baseline in epochs or steps and seconds (d_at_*,
    d_wall_time_*: mean, t-interval; negative: faster) and the speed-up, baseline epochs or steps
    / the arm's (ratio of the paired means)."""
    rows = []
    for (exp, target), part in reached.groupby(["experiment", "target"], sort=False):
        base = part[part["arm"] == baseline].set_index("seed")
        for arm in arm_order(part["arm"], baseline, treatment):
            mine = part[part["arm"] == arm].set_index("seed")
            ok = mine.dropna(subset=["at"])
            at, wt = stats.summary(ok["at"].to_numpy()), stats.summary(ok["wall_time"].to_numpy())
            row = {"experiment": exp, "target": target, "target_value": part["target_value"].iloc[0],
                   "x": part["x"].iloc[0], "arm": arm, "n": len(mine), "reached": len(ok), "at_mean": at.mean,
                   "at_sd": at.sd, "wall_time_mean": wt.mean, "wall_time_sd": wt.sd}
            if arm != baseline and not base.empty:
                both = ok.index.intersection(base.dropna(subset=["at"]).index).sort_values()
                da = stats.paired(ok.loc[both, "at"].to_numpy(), base.loc[both, "at"].to_numpy())
                dw = stats.paired(ok.loc[both, "wall_time"].to_numpy(), base.loc[both, "wall_time"].to_numpy())
                speedup = (base.loc[both, "at"].mean() / ok.loc[both, "at"].mean()) if len(both) else math.nan
                row.update({"pairs": len(both), "d_at_mean": da.mean, "d_at_t_lo": da.t_lo, "d_at_t_hi": da.t_hi,
                            "d_wall_time_mean": dw.mean, "d_wall_time_t_lo": dw.t_lo, "d_wall_time_t_hi": dw.t_hi,
                            "speedup": speedup})
            rows.append(row)
    columns = ["experiment", "target", "target_value", "x", "arm", "n", "reached", "at_mean", "at_sd",
               "wall_time_mean", "wall_time_sd", "pairs", "d_at_mean", "d_at_t_lo", "d_at_t_hi",
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
