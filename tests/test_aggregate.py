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
    assert s.loc["mimetic", "to_baseline_final"] == pytest.approx(8 / 3)
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


# --- Language-model runs, and a set of both kinds ------------------------------------------------

def test_lm_records_and_a_mixed_set_make_one_pair_of_tables(tmp_path):
    import analysis_data as data
    from mimetic.report.records import KINDS, RUN_COLUMNS, write_tables

    vision = make_run(tmp_path, "digits", "default", 0, [10, 20])
    lm = data.write_lm_run(tmp_path / "lm", "wikitext103", "mimetic", 3, [5.0, 4.0, 3.5, 3.2, 3.1])
    runs, epochs = write_tables([*records([vision]), lm[:2]], tmp_path / "runs.csv", tmp_path / "epochs.csv")
    assert list(runs["kind"]) == ["vision", "lm"] and list(epochs.columns[:4]) == ["experiment", "arm", "seed", "kind"]
    every = [c for kind in KINDS for c in RUN_COLUMNS[kind]]
    assert [c for c in runs.columns if c in every] == every  # both kinds' columns, whatever came first
    r = runs.set_index("kind").loc["lm"]
    assert (r["final_val_loss"], r["best_val_loss"], r["best_step"], r["iterations"]) == (3.1, 3.1, 500, 500)
    assert r["unigram_entropy"] == 7.5 and r["tokens_per_s"] == 5000.0 and r["dataset"] == "wikitext103"
    assert np.isnan(r["final_test_acc"]) and np.isnan(runs.set_index("kind").loc["vision", "final_val_loss"])
    lm_rows = epochs[epochs["kind"] == "lm"]
    assert list(lm_rows["step"]) == data.LM_STEPS and list(lm_rows["val_loss"]) == [5.0, 4.0, 3.5, 3.2, 3.1]
    assert lm_rows["epoch"].isna().all() and epochs.loc[epochs["kind"] == "vision", "step"].isna().all()
    # counts stay whole numbers in the CSV where the other kind leaves them empty
    csv = pd.read_csv(tmp_path / "runs.csv", dtype=str, keep_default_na=False).set_index("kind")
    assert (csv.loc["lm", "best_step"], csv.loc["vision", "epochs"], csv.loc["lm", "epochs"]) == ("500", "2", "")


def test_lm_init_stats_and_a_vision_summary_that_says_its_kind(tmp_path):
    import analysis_data as data

    lm = data.write_lm_run(tmp_path / "lm", "wikitext103", "mimetic", 0, [4.0, 3.0, 2.9, 2.8, 2.7])
    d = make_run(tmp_path, "digits", "default", 0, [10, 20])
    s = json.loads((d / "summary.json").read_text())
    (d / "summary.json").write_text(json.dumps({**s, "kind": "vision"}))
    runs, _ = load_runs([lm, (d / "summary.json", d / "metrics.csv")])
    assert runs.set_index("kind").loc["lm", "init_qk_diag_mean"] == pytest.approx(0.7)
    assert set(runs["kind"]) == {"vision", "lm"}


@pytest.mark.parametrize("damage, message", [
    (lambda s, m: ({**s, "kind": "audio"}, m), r"kind 'audio' is none of \['vision', 'lm'\]"),
    (lambda s, m: ({k: v for k, v in s.items() if k != "final_val_loss"}, m), r"lacks \['final_val_loss'\]"),
    (lambda s, m: (s, m.drop(columns="val_loss")), r"lacks column\(s\) \['val_loss'\]"),
    (lambda s, m: (s, m.assign(step=[100, 300, 200, 400, 500])), r"expected evaluation steps strictly increasing"),
    (lambda s, m: (s, m.assign(step=[100, 200, 300, 400, 400])), r"has steps \[100, 200, 300, 400, 400\]"),
    (lambda s, m: ({**s, "iterations": 600}, m), r"strictly increasing to 600"),
])
def test_a_bad_lm_record_is_named_with_what_is_wrong(tmp_path, damage, message):
    import analysis_data as data

    summary, metrics, init = data.write_lm_run(tmp_path / "lm", "wikitext103", "default", 0, [5, 4, 3, 2.9, 2.8])
    s, m = damage(json.loads(summary.read_text()), pd.read_csv(metrics))
    summary.write_text(json.dumps(s))
    m.to_csv(metrics, index=False)
    with pytest.raises(RecordError, match=message):
        load_runs([(summary, metrics, init)])


def test_each_metric_names_columns_of_its_kind():
    """compare's metrics read the columns records writes (each module owns its own half)."""
    from mimetic.report import compare
    from mimetic.report.records import KINDS, METRICS_COLUMNS, RUN_COLUMNS

    assert set(compare.METRICS) == set(KINDS)
    for kind, m in compare.METRICS.items():
        assert {m.final, m.best} <= set(RUN_COLUMNS[kind]) and {m.x, m.curve} <= set(METRICS_COLUMNS[kind])
