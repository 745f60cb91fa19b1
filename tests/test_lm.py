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

from mimetic.data.text import load_text
from mimetic.train import lm
from text_data import plays_text

EXACT = ["step", "lr", "train_loss", "val_loss", "val_ppl", "val_bits"]  # not timings


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "plays.txt"
    path.write_text(plays_text()[:200_000])  # 180k training and 20k validation characters
    return load_text(path, "char")


def config(text, **changes):
    return dataclasses.replace(lm.LMConfig(dataset="text", model="gpt_char_tiny", iterations=30, warmup_iters=5,
                                           batch_size=8, context=32, eval_every=10, checkpoint_every=10), **changes)


def check_records(folder, summary):
    """A finished LM run's records: the metrics per evaluation, the summary, the weights, init.json.
    (That a run learns below the unigram entropy: tests/test_lm_workflow.py, through Snakemake.)"""
    rows = pd.read_csv(folder / "metrics.csv")
    assert rows["step"].tolist() == [10, 20, 30] and set(EXACT) <= set(rows.columns)
    assert summary["final_val_loss"] == rows["val_loss"].iloc[-1] < summary["unigram_entropy"]
    assert rows["val_ppl"].iloc[-1] == pytest.approx(math.exp(rows["val_loss"].iloc[-1]))
    assert rows["val_bits"].iloc[-1] == pytest.approx(rows["val_loss"].iloc[-1] / math.log(2))
    assert (rows["tokens_per_s"] > 0).all()
    weights = load_file(folder / "final.safetensors")
    assert "lm_head.weight" not in weights and weights["transformer.wte.weight"].shape[0] == summary["vocab_size"]
    record = json.loads((folder / "summary.json").read_text())
    assert record["kind"] == "lm" and record["best_step"] in (10, 20, 30) and record["tokens_per_s"] > 0
    init = json.loads((folder / "init.json").read_text())
    assert len(init["layers"]) == 4 and init["layers"][0]["vo_diag_mean"] < -0.3  # mimetic's -beta2 I
    assert any(init["changed"].values()) and not init["changed"]["transformer.wte.weight"]


def test_a_killed_run_resumes_to_the_uninterrupted_result(text, tmp_path, monkeypatch):
    cfg = config(text, init="mimetic")
    check_records(tmp_path / "whole", lm.train_lm(cfg, tmp_path / "whole", data=text, log=lambda s: None))
    windows = lm.train_windows

    def dies_at_step_25(tokens, context, batch, seed, step):
        if step == 25:
            raise KeyboardInterrupt  # after the checkpoint of step 20
        return windows(tokens, context, batch, seed, step)

    monkeypatch.setattr(lm, "train_windows", dies_at_step_25)
    with pytest.raises(KeyboardInterrupt):
        lm.train_lm(cfg, tmp_path / "killed", data=text, checkpoint=tmp_path / "ckpt.pt", log=lambda s: None)
    assert (tmp_path / "ckpt.pt").is_file() and not (tmp_path / "killed/summary.json").exists()
    monkeypatch.setattr(lm, "train_windows", windows)
    said = []
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["progress"]["step"] == 20
    lm.train_lm(cfg, tmp_path / "killed", data=text, checkpoint=tmp_path / "ckpt.pt", log=said.append)
    assert any("resumed from" in s and "step 20" in s for s in said)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "whole/metrics.csv")[EXACT],
                                  pd.read_csv(tmp_path / "killed/metrics.csv")[EXACT])
    a, b = load_file(tmp_path / "whole/final.safetensors"), load_file(tmp_path / "killed/final.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "ckpt.pt").exists()


def test_bad_lm_config_names_the_key(text):
    for changes, message in [({"context": 512}, "context=512: model 'gpt_char_tiny' has 128 positions"),
                             ({"tokenizer": "bpe"}, "tokenizer='bpe'"),
                             ({"init": "impulse"}, "init='impulse': works on ViTs only"),
                             ({"warmup_iters": 30}, "warmup_iters=30"),
                             ({"init": "mimetic", "init_params": {"gamma": 1}}, "no parameter \\['gamma'\\]")]:
        with pytest.raises(ValueError, match=message):
            config(text, **changes).validate()


def test_a_training_step_copies_once_to_the_device_and_never_waits_on_it():
    """One step of train_lm on a device faked as `meta`: the window offsets are the only host copy,
    and nothing reads a value back (a meta tensor has none to read)."""
    from mimetic.bench.flops import DeviceWork
    from mimetic.train.gpt import build_run_gpt

    cfg = lm.LMConfig(dataset="text", model="gpt_char_tiny", batch_size=4, context=16).validate()
    model = build_run_gpt(cfg.model, 65, 0, "mimetic", {}).to("meta")
    optimizer, tokens = lm.build_optimizer(cfg, model), torch.zeros(1000, dtype=torch.long, device="meta")
    amp = lm.autocast(tokens.device, cfg.amp)
    lm.train_step(cfg, model, optimizer, tokens, 0, amp)  # the optimizer's state is made at its first step
    with DeviceWork() as work:
        lm.train_step(cfg, model, optimizer, tokens, 1, amp)
    assert work.copies == 1 and work.kernels > 100
