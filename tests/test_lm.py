"""The language-model run on real text (the plays of tests/text_data.py, cut to a CPU's size):
it learns below the characters' unigram entropy, its records carry the LM metrics, and a run
killed mid-way resumes to the uninterrupted result."""

import dataclasses
import json
import math
import os
import signal

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from mimetic.data.text import load_text
from mimetic.train import lm
from mimetic.train.preempt import Preempted
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


@pytest.fixture(scope="module")
def whole(text, tmp_path_factory):
    """The uninterrupted run that the stopped ones must equal."""
    folder = tmp_path_factory.mktemp("whole")
    check_records(folder, lm.train_lm(config(text, init="mimetic"), folder, data=text, log=lambda s: None))
    return folder


def same_run(a, b):
    pd.testing.assert_frame_equal(pd.read_csv(a / "metrics.csv")[EXACT], pd.read_csv(b / "metrics.csv")[EXACT])
    wa, wb = load_file(a / "final.safetensors"), load_file(b / "final.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("how", ["killed", "sigterm"])
def test_a_stopped_run_resumes_to_the_uninterrupted_result(text, whole, tmp_path, monkeypatch, how):
    """Killed at step 25 it resumes from the checkpoint of step 20; sent SIGTERM during step 23
    (pre-emption) it finishes that step, writes its checkpoint and stops, and resumes from step 24."""
    cfg, windows, ckpt = config(text, init="mimetic"), lm.train_windows, tmp_path / "ckpt.pt"

    def stops_at_step(tokens, context, batch, seed, step):
        if how == "killed" and step == 25:
            raise KeyboardInterrupt
        if how == "sigterm" and step == 23:
            os.kill(os.getpid(), signal.SIGTERM)
        return windows(tokens, context, batch, seed, step)

    monkeypatch.setattr(lm, "train_windows", stops_at_step)
    with pytest.raises(KeyboardInterrupt if how == "killed" else Preempted) as stopped:
        lm.train_lm(cfg, tmp_path / "run", data=text, checkpoint=ckpt, log=lambda s: None)
    assert not (tmp_path / "run/summary.json").exists()
    step = {"killed": 20, "sigterm": 24}[how]
    if how == "sigterm":
        assert str(stopped.value) == (f"stopped by SIGTERM at step 24 of 30; checkpoint written to {ckpt}; the same "
                                      "command resumes it (exit status 75: retry)")
    assert torch.load(ckpt, weights_only=True)["progress"]["step"] == step
    monkeypatch.setattr(lm, "train_windows", windows)
    said = []
    lm.train_lm(cfg, tmp_path / "run", data=text, checkpoint=ckpt, log=said.append)
    assert said[0] == f"resumed from {ckpt} at step {step}"
    same_run(whole, tmp_path / "run")
    assert not ckpt.exists()


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
