"""Finished runs -> tidy tables: one row per run, one row per run and epoch. Reading only: the
statistics are mimetic.report.compare's and the tables mimetic.report.tables'.

A run is known by its records, the summary.json, metrics.csv and init.json that
`mimetic.train.loop` writes: the summary holds its identity (experiment and arm labels, init, seed),
never read back from folder names; init.json what its init touched and the first layer's products.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from mimetic import io

IDENTITY = ("experiment", "arm", "seed")
SUMMARY_KEYS = ("experiment", "arm", "seed", "init", "init_params", "config", "final_test_acc", "best_test_acc",
                "best_epoch", "epochs", "wall_time", "device")
METRICS_COLUMNS = ("epoch", "test_acc", "wall_time")
# From init.json: the first attention layer's statistics at initialization, as runs.csv columns.
INIT_STATS = ("qk_diag_mean", "qk_offdiag_abs_mean", "vo_diag_mean", "vo_offdiag_abs_mean")


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


def _read_init(path: Path) -> dict:
    """runs.csv's columns from a run's init.json: what the init declares it touches, and its first
    layer's statistics (init_<stat>)."""
    try:
        r = json.loads(path.read_text())
        return {"touches": " ".join(r["touches"]) or "nothing",
                **{f"init_{k}": float(r["layers"][0][k]) for k in INIT_STATS}}
    except FileNotFoundError:
        raise RecordError(f"{path}: missing; its run is not finished") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError, ValueError) as e:
        raise RecordError(f"{path}: not an init record of this version of `mimetic train` ({type(e).__name__}: "
                          f"{e}); delete the run folder and train it again") from None


def load_runs(records: Iterable[tuple[str | Path, ...]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, epochs) from (summary.json, metrics.csv[, init.json]) per run: one row per run, and
    one row per (run, epoch). Raises RecordError naming the first bad file."""
    runs, epochs = [], []
    for summary_path, metrics_path, *init_path in records:
        s = _read_summary(Path(summary_path))
        key = {k: s[k] for k in IDENTITY}
        runs.append({**key, "init": s["init"], "init_params": json.dumps(s["init_params"], sort_keys=True),
                     "dataset": s["config"]["dataset"], "model": s["config"]["model"],
                     "final_test_acc": s["final_test_acc"], "best_test_acc": s["best_test_acc"],
                     "best_epoch": s["best_epoch"], "epochs": s["epochs"], "wall_time": s["wall_time"],
                     "device": s["device"], **(_read_init(Path(init_path[0])) if init_path else {})})
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


def write_tables(records: Iterable[tuple[str | Path, ...]], runs_csv: str | os.PathLike,
                 epochs_csv: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """load_runs, then the two tables as CSV (each written atomically, both only once all records read)."""
    runs, epochs = load_runs(records)
    io.write_csv(runs_csv, runs)
    io.write_csv(epochs_csv, epochs)
    return runs, epochs
