"""Finished runs -> tidy tables: one row per run, one row per run and epoch. Reading only: the
statistics are mimetic.report.compare's and the tables mimetic.report.tables'.

A run is known by its records, the summary.json, metrics.csv and init.json that its training
writes (`mimetic.train.loop` for image classification, `mimetic.train.lm` for language models):
the summary holds its identity (experiment and arm labels, init, seed), never read back from
folder names, and its kind (KINDS); init.json what its init touched and the first layer's
products. Runs of every kind go into one runs.csv and one epochs.csv: each kind's columns are in
both, empty where a row is of another kind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from mimetic import io

IDENTITY = ("experiment", "arm", "seed")
KINDS = ("vision", "lm")  # image classification (ViTs), language models (GPTs)
# Image-classification summaries from before kinds existed say none.
UNSTATED_KIND = "vision"
_COMMON_KEYS = ("experiment", "arm", "seed", "init", "init_params", "config", "wall_time", "device")
# Per kind: the summary's values that runs.csv keeps (besides the common ones), and what a
# metrics.csv row holds: its progress column (epochs 1..epochs; evaluation steps ending at
# iterations), the curve, cumulative wall time.
RUN_COLUMNS = {"vision": ("final_test_acc", "best_test_acc", "best_epoch", "epochs"),
               "lm": ("final_val_loss", "best_val_loss", "best_step", "final_val_ppl", "final_val_bits", "iterations",
                      "tokens_per_s", "unigram_entropy")}
SUMMARY_KEYS = {kind: (*_COMMON_KEYS, *cols) for kind, cols in RUN_COLUMNS.items()}
METRICS_COLUMNS = {"vision": ("epoch", "test_acc", "wall_time"), "lm": ("step", "val_loss", "wall_time")}
# Counts: integers in the CSV even where another kind's rows leave them empty.
_COUNTS = ("best_epoch", "epochs", "best_step", "iterations", "epoch", "step")
# From init.json: the first attention layer's statistics at initialization, as runs.csv columns.
INIT_STATS = ("qk_diag_mean", "qk_offdiag_abs_mean", "vo_diag_mean", "vo_offdiag_abs_mean")


class RecordError(ValueError):
    """A run record is missing or malformed; the message names the file and what is wrong."""


def _read_summary(path: Path) -> tuple[dict, str]:
    """The summary and its kind."""
    try:
        s = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path}: missing; its run is not finished") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: not valid JSON ({e}); delete the run folder and train it again") from None
    kind = s.get("kind", UNSTATED_KIND) if isinstance(s, dict) else UNSTATED_KIND
    if kind not in KINDS:
        raise RecordError(f"{path}: kind {kind!r} is none of {list(KINDS)}")
    missing = [k for k in SUMMARY_KEYS[kind] if not isinstance(s, dict) or k not in s]
    if missing:
        raise RecordError(f"{path}: lacks {missing}; it was not written by this version of `mimetic train`: "
                          "delete the run folder and train it again")
    return s, kind


def _check_progress(path: Path, df: pd.DataFrame, kind: str, s: dict) -> None:
    if kind == "vision":
        if df["epoch"].tolist() != list(range(1, s["epochs"] + 1)):
            raise RecordError(f"{path}: has epochs {df['epoch'].tolist()[:5]}..., expected 1..{s['epochs']} as its "
                              "summary says")
        return
    steps = df["step"].tolist()
    if not steps or any(b <= a for a, b in zip(steps, steps[1:])) or steps[-1] != s["iterations"]:
        raise RecordError(f"{path}: has steps {steps[:5]}{'...' if len(steps) > 5 else ''}, expected evaluation steps "
                          f"strictly increasing to {s['iterations']} (its summary's iterations)")


def _read_metrics(path: Path, kind: str, s: dict) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise RecordError(f"{path}: missing; its run is not finished") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: not a readable CSV ({e})") from None
    missing = [c for c in METRICS_COLUMNS[kind] if c not in df.columns]
    if missing:
        raise RecordError(f"{path}: lacks column(s) {missing}")
    _check_progress(path, df, kind, s)
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


def _config(path: Path, s: dict) -> dict:
    try:
        return {k: s["config"][k] for k in ("dataset", "model")}
    except (KeyError, TypeError) as e:
        raise RecordError(f"{path}: its config lacks {e}; delete the run folder and train it again") from None


def load_runs(records: Iterable[tuple[str | Path, ...]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, epochs) from (summary.json, metrics.csv[, init.json]) per run, of any kinds: one row
    per run (identity, kind, init, every kind's RUN_COLUMNS), and one row per run and evaluation
    (identity, kind, the metrics.csv columns: per epoch, or per evaluation step for a language
    model). Raises RecordError naming the first bad file."""
    runs, epochs = [], []
    for summary_path, metrics_path, *init_path in records:
        s, kind = _read_summary(Path(summary_path))
        key = {k: s[k] for k in IDENTITY}
        runs.append({**key, "kind": kind, "init": s["init"],
                     "init_params": json.dumps(s["init_params"], sort_keys=True), **_config(Path(summary_path), s),
                     **{c: s[c] for c in RUN_COLUMNS[kind]}, "wall_time": s["wall_time"], "device": s["device"],
                     **(_read_init(Path(init_path[0])) if init_path else {})})
        epochs.append(_read_metrics(Path(metrics_path), kind, s).assign(**key, kind=kind))
    if not runs:
        raise ValueError("no runs to aggregate")
    runs_df = pd.DataFrame(runs)
    # one column order whatever kinds come first: identity, what the run is, every kind's values, the rest
    layout = [*IDENTITY, "kind", "init", "init_params", "dataset", "model",
              *(c for kind in KINDS for c in RUN_COLUMNS[kind]), "wall_time", "device"]
    runs_df = runs_df.reindex(columns=[*layout, *(c for c in runs_df.columns if c not in layout)])
    runs_df = _counts(runs_df).sort_values(list(IDENTITY), ignore_index=True)
    twice = runs_df[runs_df.duplicated(list(IDENTITY), keep=False)]
    if len(twice):
        raise RecordError(f"two records claim the same run {twice.iloc[0][list(IDENTITY)].to_dict()}")
    epochs_df = _counts(pd.concat(epochs, ignore_index=True))
    first = [*IDENTITY, "kind"]
    return runs_df, epochs_df[first + [c for c in epochs_df.columns if c not in first]]


def _counts(df: pd.DataFrame) -> pd.DataFrame:
    # pandas makes a column with empty cells float ("10.0"): nullable integers keep counts whole.
    return df.astype({c: "Int64" for c in _COUNTS if c in df.columns})


def write_tables(records: Iterable[tuple[str | Path, ...]], runs_csv: str | os.PathLike,
                 epochs_csv: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """load_runs, then the two tables as CSV (each written atomically, both only once all records read)."""
    runs, epochs = load_runs(records)
    io.write_csv(runs_csv, runs)
    io.write_csv(epochs_csv, epochs)
    return runs, epochs
