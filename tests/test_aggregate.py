"""Run records and the summary table's statistics, on hand-made run folders with known numbers."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mimetic.report.records import RecordError, load_runs
from mimetic.report.render import markdown
from mimetic.report.tables import summary_table


def records(dirs):
    return [(d / "summary.json", d / "metrics.csv") for d in dirs]


def make_run(root, experiment, arm, seed, accs):
    d = root / f"run-{experiment}-{arm}-{seed}"  # identity comes from the records, not the folder
    d.mkdir(parents=True)
    n = len(accs)
    pd.DataFrame({"epoch": range(1, n + 1), "lr": 1e-3, "train_loss": 1.0, "train_acc": 50.0, "test_loss": 1.0,
                  "test_acc": accs, "images_per_s": 100.0, "wall_time": np.arange(1, n + 1.0)}).to_csv(
        d / "metrics.csv", index=False)
    summary = {"experiment": experiment, "arm": arm, "seed": seed, "init": arm.split("_")[0], "init_params": {},
               "config": {"dataset": "digits", "model": "vit_digits"},
               "final_test_acc": accs[-1], "best_test_acc": max(accs), "best_epoch": int(np.argmax(accs)) + 1,
               "epochs": n, "wall_time": float(n), "device": "cpu"}
    (d / "summary.json").write_text(json.dumps(summary))
    return d


@pytest.fixture
def runs(tmp_path):
    curves = {
        ("default", 0): [10, 50, 70], ("default", 1): [10, 40, 72], ("default", 2): [20, 60, 68],
        ("mimetic", 0): [30, 71, 75], ("mimetic", 1): [30, 65, 80], ("mimetic", 2): [20, 50, 74],
    }
    dirs = [make_run(tmp_path, "digits", arm, seed, accs) for (arm, seed), accs in curves.items()]
    return load_runs(records(dirs))


def test_load_runs_keys_and_shapes(runs):
    run_df, epochs = runs
    assert len(run_df) == 6 and len(epochs) == 18
    assert run_df[["experiment", "arm", "seed"]].drop_duplicates().shape[0] == 6
    assert list(epochs.columns[:3]) == ["experiment", "arm", "seed"]


def test_summary_statistics_are_paired_by_seed(runs):
    s = summary_table(*runs, baseline="default").data.set_index("arm")
    base, mim = np.array([70, 72, 68.0]), np.array([75, 80, 74.0])
    assert s.loc["mimetic", "mean"] == pytest.approx(mim.mean())
    assert s.loc["mimetic", "sd"] == pytest.approx(mim.std(ddof=1))
    assert (s.loc["mimetic", "min"], s.loc["mimetic", "max"]) == (74, 80)
    gain = mim - base
    assert s.loc["mimetic", "gain_mean"] == pytest.approx(gain.mean())
    half = stats.t.ppf(0.975, 2) * gain.std(ddof=1) / np.sqrt(3)
    assert s.loc["mimetic", "gain_t_lo"] == pytest.approx(gain.mean() - half)
    assert s.loc["mimetic", "gain_p"] == pytest.approx(stats.ttest_rel(mim, base).pvalue)
    assert np.isnan(s.loc["default", "gain_mean"])
    assert s.loc["mimetic", "seeds"] == "0 1 2"
    # The baseline's mean final accuracy is 70: mimetic runs reach it at epochs 2, 3, 3.
    assert s.loc["mimetic", "epochs_to_baseline_final"] == pytest.approx(8 / 3)
    assert s.loc["mimetic", "reached_baseline"] == "3/3"
    assert s.loc["default", "reached_baseline"] == "2/3"  # seed 2 ends at 68


def test_summary_markdown_shows_mean_spread_and_seeds(runs):
    md = markdown(summary_table(*runs, baseline="default"))
    assert "| digits | mimetic | 3 (0 1 2) | 76.33 ± 3.21 | 74.00 – 80.00 | +6.33 |" in md
    assert "| digits | default | 3 (0 1 2) | 70.00 ± 2.00 | 68.00 – 72.00 | – |" in md


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "summary.json").unlink(), r"summary\.json: missing"),
    (lambda d: (d / "summary.json").write_text('{"seed": 0, '), r"summary\.json: not valid JSON"),
    (lambda d: (d / "summary.json").write_text('{"seed": 0}'), r"summary\.json: lacks \['experiment', 'arm'"),
    (lambda d: (d / "metrics.csv").write_text("epoch,lr\n1,0.1\n"), r"metrics\.csv: lacks column\(s\) \['test_acc'"),
    (lambda d: (d / "metrics.csv").write_text('"'), r"metrics\.csv: (not a readable CSV|lacks)"),
])
def test_a_bad_record_is_named_with_what_is_wrong(tmp_path, damage, message):
    d = make_run(tmp_path, "digits", "default", 0, [10, 20])
    damage(d)
    with pytest.raises(RecordError, match=message):
        load_runs(records([d]))


def test_two_records_of_one_run_are_rejected(tmp_path):
    a = make_run(tmp_path / "a", "digits", "default", 0, [10, 20])
    b = make_run(tmp_path / "b", "digits", "default", 0, [10, 30])
    with pytest.raises(RecordError, match="two records claim the same run"):
        load_runs(records([a, b]))
