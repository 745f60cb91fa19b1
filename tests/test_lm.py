"""The language-model run on real text (the plays of tests/text_data.py, cut to a CPU's size):
it learns below the characters' unigram entropy, its records carry the LM metrics, and a run
killed mid-way resumes to the uninterrupted result."""

import dataclasses
import json
import math

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from mimetic.train import lm
from text_data import plays_text

EXACT = ["step", "lr", "train_loss", "val_loss", "val_ppl", "val_bits"]  # not timings


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "plays.txt"
    path.write_text(plays_text()[:200_000])  # 180k training and 20k validation characters
    return str(path)


def config(text, **changes):
    return dataclasses.replace(lm.LMConfig(text=text, iterations=30, warmup_iters=5, batch_size=8, context=32,
                                           eval_every=10, checkpoint_every=10), **changes)


def test_a_run_learns_below_the_unigram_entropy_and_records_the_lm_metrics(text, tmp_path):
    summary = lm.train_lm(config(text, iterations=100, batch_size=16, eval_every=50), tmp_path / "run",
                          log=lambda s: None)
    rows = pd.read_csv(tmp_path / "run/metrics.csv")
    assert rows["step"].tolist() == [50, 100] and set(EXACT) <= set(rows.columns)
    # 3.41 nats for these characters' frequencies; 100 steps of 512 characters reach about 2.65
    assert summary["final_val_loss"] == rows["val_loss"].iloc[-1] < summary["unigram_entropy"] - 0.5
    assert rows["val_ppl"].iloc[-1] == pytest.approx(math.exp(rows["val_loss"].iloc[-1]))
    assert rows["val_bits"].iloc[-1] == pytest.approx(rows["val_loss"].iloc[-1] / math.log(2))
    assert (rows["tokens_per_s"] > 0).all()
    weights = load_file(tmp_path / "run/final.safetensors")
    assert "lm_head.weight" not in weights and weights["transformer.wte.weight"].shape[0] == summary["vocab_size"]
    assert json.loads((tmp_path / "run/summary.json").read_text())["config"]["text"] == text


def test_a_killed_run_resumes_to_the_uninterrupted_result(text, tmp_path, monkeypatch):
    cfg = config(text, init="mimetic")
    lm.train_lm(cfg, tmp_path / "whole", log=lambda s: None)
    windows = lm.train_windows

    def dies_at_step_25(tokens, context, batch, seed, step):
        if step == 25:
            raise KeyboardInterrupt  # after the checkpoint of step 20
        return windows(tokens, context, batch, seed, step)

    monkeypatch.setattr(lm, "train_windows", dies_at_step_25)
    with pytest.raises(KeyboardInterrupt):
        lm.train_lm(cfg, tmp_path / "killed", checkpoint=tmp_path / "ckpt.pt", log=lambda s: None)
    assert (tmp_path / "ckpt.pt").is_file() and not (tmp_path / "killed/summary.json").exists()
    monkeypatch.setattr(lm, "train_windows", windows)
    said = []
    lm.train_lm(cfg, tmp_path / "killed", checkpoint=tmp_path / "ckpt.pt", log=said.append)
    assert any("resumed from" in s and "step 20" in s for s in said)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "whole/metrics.csv")[EXACT],
                                  pd.read_csv(tmp_path / "killed/metrics.csv")[EXACT])
    a, b = load_file(tmp_path / "whole/final.safetensors"), load_file(tmp_path / "killed/final.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "ckpt.pt").exists()


def test_bad_lm_config_names_the_key(text):
    for changes, message in [({"context": 512}, "context=512: model 'gpt_char_tiny' has 128 positions"),
                             ({"tokenizer": "bpe"}, "tokenizer='bpe'"),
                             ({"warmup_iters": 30}, "warmup_iters=30"),
                             ({"init": "mimetic", "init_params": {"gamma": 1}}, "no parameter \\['gamma'\\]")]:
        with pytest.raises(ValueError, match=message):
            config(text, **changes).validate()
