"""Finished runs -> tidy tables and honest statistics.

Run folders follow the workflow's layout, <experiment>/<arm>/seed<k>/, each with the
summary.json and metrics.csv that `mimetic.train` writes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from mimetic import stats


def load_runs(run_dirs: Iterable[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, epochs): one row per run, and one row per (run, epoch)."""
    runs, epochs = [], []
    for d in map(Path, run_dirs):
        summary_path = d / "summary.json"
        if not summary_path.is_file():
            raise FileNotFoundError(f"{summary_path} is missing: {d} is not a finished run")
        s = json.loads(summary_path.read_text())
        key = {"experiment": d.parent.parent.name, "arm": d.parent.name, "seed": s["seed"]}
        runs.append({**key, "dataset": s["config"]["dataset"], "model": s["config"]["model"],
                     "init": s["arm"], "final_test_acc": s["final_test_acc"], "best_test_acc": s["best_test_acc"],
                     "best_epoch": s["best_epoch"], "epochs": s["epochs"], "wall_time": s["wall_time"],
                     "device": s["device"]})
        epochs.append(pd.read_csv(d / "metrics.csv").assign(**key))
    if not runs:
        raise ValueError("no runs to aggregate")
    runs_df = pd.DataFrame(runs).sort_values(["experiment", "arm", "seed"], ignore_index=True)
    epochs_df = pd.concat(epochs, ignore_index=True)
    first = ["experiment", "arm", "seed"]
    return runs_df, epochs_df[first + [c for c in epochs_df.columns if c not in first]]


def epochs_to_reach(epochs: pd.DataFrame, target: float) -> pd.Series:
    """Per run (experiment, arm, seed): the first epoch whose test accuracy >= target (NaN: never)."""
    hit = epochs[epochs["test_acc"] >= target]
    first = hit.groupby(["experiment", "arm", "seed"])["epoch"].min()
    return first.reindex(epochs.groupby(["experiment", "arm", "seed"]).size().index)


def summarize(runs: pd.DataFrame, epochs: pd.DataFrame, baseline: str = "default") -> pd.DataFrame:
    """One row per (experiment, arm): final test accuracy over seeds (mean, std, min, max), and
    the gain over `baseline` paired by seed (mean, std, 95% t-interval, paired t-test p).

    Time to accuracy: mean epochs each run needs to reach the baseline's mean final accuracy
    (runs that never reach it count as not reached, in `reached_baseline`).
    """
    rows = []
    for exp, group in runs.groupby("experiment", sort=True):
        acc = group.pivot(index="seed", columns="arm", values="final_test_acc")
        base_mean = acc[baseline].mean() if baseline in acc else math.nan
        reach = (epochs_to_reach(epochs[epochs["experiment"] == exp], base_mean)
                 if baseline in acc else None)
        for arm in acc.columns:
            x = acc[arm].dropna()
            row = {"experiment": exp, "arm": arm, "n_seeds": len(x), "seeds": " ".join(map(str, x.index)),
                   "final_acc_mean": x.mean(), "final_acc_std": x.std(ddof=1) if len(x) > 1 else math.nan,
                   "final_acc_min": x.min(), "final_acc_max": x.max(),
                   "best_acc_mean": group[group["arm"] == arm]["best_test_acc"].mean()}
            if baseline in acc and arm != baseline:
                paired = acc[[arm, baseline]].dropna()
                gain = (paired[arm] - paired[baseline]).to_numpy()
                lo, hi = stats.t_interval(gain)
                p = stats.paired_p(paired[arm].to_numpy(), paired[baseline].to_numpy())
                row.update({"gain_n": len(gain), "gain_mean": gain.mean() if len(gain) else math.nan,
                            "gain_std": gain.std(ddof=1) if len(gain) > 1 else math.nan,
                            "gain_ci95_low": lo, "gain_ci95_high": hi, "gain_p": p})
            if reach is not None:
                reached = reach.xs(arm, level="arm")
                row.update({"epochs_to_baseline_final": reached.mean(),
                            "reached_baseline": f"{int(reached.notna().sum())}/{len(reached)}"})
            rows.append(row)
    return pd.DataFrame(rows)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.3g}" if abs(v) < 0.01 and v != 0 else f"{v:.2f}"
    return str(v)


def markdown(summary: pd.DataFrame, baseline: str = "default") -> str:
    """The summary as a Markdown table for humans: accuracy as mean ± std, gains with 95% CIs."""
    lines = [f"Final test accuracy (%) over seeds, and the gain over `{baseline}` paired by seed "
             "(mean, 95% t-interval, paired t-test p).", "",
             "| experiment | arm | seeds | final acc | gain | gain 95% CI | p | epochs to baseline final |",
             "|---|---|---|---|---|---|---|---|"]
    for r in summary.to_dict("records"):
        lines.append(
            f"| {r['experiment']} | {r['arm']} | {r['n_seeds']} ({r['seeds']}) | "
            f"{_fmt(r['final_acc_mean'])} ± {_fmt(r['final_acc_std'])} | {_fmt(r.get('gain_mean', math.nan))} | "
            f"[{_fmt(r.get('gain_ci95_low', math.nan))}, {_fmt(r.get('gain_ci95_high', math.nan))}] | "
            f"{_fmt(r.get('gain_p', math.nan))} | {_fmt(r.get('epochs_to_baseline_final', math.nan))} "
            f"({r.get('reached_baseline', '–')}) |")
    return "\n".join(lines) + "\n"
