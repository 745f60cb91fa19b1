"""Finished runs -> tidy tables and honest statistics.

A run is known by its records, the summary.json and metrics.csv that `mimetic.train` writes:
the summary holds its identity (experiment and arm labels, init, seed), never read back from
folder names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from mimetic import stats

IDENTITY = ("experiment", "arm", "seed")
SUMMARY_KEYS = ("experiment", "arm", "seed", "init", "init_params", "config", "final_test_acc", "best_test_acc",
                "best_epoch", "epochs", "wall_time", "device")
METRICS_COLUMNS = ("epoch", "test_acc", "wall_time")


class RecordError(ValueError):
    """A run record is missing or malformed; the message names the file and what is wrong."""


def _read_summary(path: Path) -> dict:
    try:
        s = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path}: missing; its run is not finished") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: not valid JSON ({e}); delete the run folder and train it again") from None
    missing = [k for k in SUMMARY_KEYS if not isinstance(s, dict) or k not in s]
    if missing:
        raise RecordError(f"{path}: lacks {missing}; it was not written by this version of `mimetic train`: "
                          "delete the run folder and train it again")
    return s


def _read_metrics(path: Path, epochs: int) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise RecordError(f"{path}: missing; its run is not finished") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: not a readable CSV ({e})") from None
    missing = [c for c in METRICS_COLUMNS if c not in df.columns]
    if missing:
        raise RecordError(f"{path}: lacks column(s) {missing}")
    if df["epoch"].tolist() != list(range(1, epochs + 1)):
        raise RecordError(f"{path}: has epochs {df['epoch'].tolist()[:5]}..., expected 1..{epochs} as its summary says")
    return df


def load_runs(records: Iterable[tuple[str | Path, str | Path]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, epochs) from (summary.json, metrics.csv) pairs: one row per run, and one row per
    (run, epoch). Raises RecordError naming the first bad file."""
    runs, epochs = [], []
    for summary_path, metrics_path in records:
        s = _read_summary(Path(summary_path))
        key = {k: s[k] for k in IDENTITY}
        runs.append({**key, "init": s["init"], "init_params": json.dumps(s["init_params"], sort_keys=True),
                     "dataset": s["config"]["dataset"], "model": s["config"]["model"],
                     "final_test_acc": s["final_test_acc"], "best_test_acc": s["best_test_acc"],
                     "best_epoch": s["best_epoch"], "epochs": s["epochs"], "wall_time": s["wall_time"],
                     "device": s["device"]})
        epochs.append(_read_metrics(Path(metrics_path), s["epochs"]).assign(**key))
    if not runs:
        raise ValueError("no runs to aggregate")
    runs_df = pd.DataFrame(runs).sort_values(list(IDENTITY), ignore_index=True)
    twice = runs_df[runs_df.duplicated(list(IDENTITY), keep=False)]
    if len(twice):
        raise RecordError(f"two records claim the same run {twice.iloc[0][list(IDENTITY)].to_dict()}")
    epochs_df = pd.concat(epochs, ignore_index=True)
    first = list(IDENTITY)
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
