"""The training engine as a process: killed and resumed, data-parallel, accumulated; models."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from mimetic.train.models import MODELS, build_vit, geometry
from mimetic.train.models import build_model
from mimetic.train.recipe import TrainConfig
from mimetic.train.loop import train

RECIPE = {"dataset": "digits", "model": "vit_digits", "batch_size": 256, "warmup_epochs": 1, "lr": 0.002,
          "crop_padding": 1, "init": "mimetic", "epochs": 6}
EXACT = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]  # not timings


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mimetic", "train", "--recipe", json.dumps(RECIPE), "--threads", "1", "--gpus", "0",
            *args]


def run(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cli(*args), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    run("--out", str(out))
    return out


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_result(tmp_path, reference):
    out, ckpt = tmp_path / "run", tmp_path / "ckpt.pt"
    proc = subprocess.Popen(cli("--out", str(out), "--checkpoint", str(ckpt)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while not ckpt.exists():  # the first epoch is done and on disk
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()

    resumed = run("--out", str(out), "--checkpoint", str(ckpt))
    first = next(line for line in resumed.stdout.splitlines() if line.startswith("resumed"))
    done = int(first.rsplit(" ", 1)[1])
    assert 1 <= done < 6, first
    pd.testing.assert_frame_equal(pd.read_csv(out / "metrics.csv")[EXACT],
                                  pd.read_csv(reference / "metrics.csv")[EXACT])
    a, b = load_file(out / "final.safetensors"), load_file(reference / "final.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not ckpt.exists()


@pytest.fixture(scope="module")
def ddp_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    run("--processes", "2", "--out", str(out))
    return out


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(ddp_reference, reference):
    ddp, single = pd.read_csv(ddp_reference / "metrics.csv"), pd.read_csv(reference / "metrics.csv")
    for col in ("train_loss", "test_loss", "lr"):
        assert ddp[col].to_numpy() == pytest.approx(single[col].to_numpy(), rel=1e-4), col
    assert (ddp["test_acc"] - single["test_acc"]).abs().max() <= 100 * 2 / 360  # at most 2 of 360 images
    summary = json.loads((ddp_reference / "summary.json").read_text())
    assert summary["processes"] == 2


@pytest.mark.parametrize("processes", [1, 2])
def test_sigterm_mid_epoch_checkpoints_then_the_rerun_equals_the_uninterrupted_run(
        tmp_path, request, processes):
    """Pre-emption as SLURM does it: SIGTERM (to the launcher; with 2 processes it passes it on to
    the workers, which agree on the step to stop at), the step finished, the checkpoint written
    mid-epoch, exit status 75; then the same command, to the uninterrupted run's metrics and weights."""
    reference = request.getfixturevalue("reference" if processes == 1 else "ddp_reference")
    out, ckpt = tmp_path / "run", tmp_path / "ckpt.pt"
    argv = ["--out", str(out), "--checkpoint", str(ckpt), "--processes", str(processes)]
    proc = subprocess.Popen(cli(*argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while not ckpt.exists():  # epoch 1's checkpoint, its last act: epoch 2's steps come next
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.01)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    said = proc.stdout.read().splitlines()
    assert proc.wait(timeout=60) == 75, said
    assert time.monotonic() - sent < 30  # within torchrun's wait for its workers, and SLURM's default KillWait
    assert said[-1].startswith("mimetic train: stopped by SIGTERM"), said
    saved = torch.load(ckpt, weights_only=True)  # tensors and plain values only
    assert (saved["epoch"], saved["step"]) in {(1, 1), (1, 2), (1, 3)}, "mid-epoch 2 (of 5 steps)"
    assert not (out / "summary.json").exists()

    resumed = run(*argv)
    assert f"resumed from {ckpt} at epoch 2 step {saved['step']}" in resumed.stdout
    pd.testing.assert_frame_equal(pd.read_csv(out / "metrics.csv")[EXACT],
                                  pd.read_csv(reference / "metrics.csv")[EXACT])
    a, b = load_file(out / "final.safetensors"), load_file(reference / "final.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not ckpt.exists()


def test_a_checkpoint_holding_a_pickled_object_is_refused_unrun(tmp_path):
    """A file planted where the checkpoint goes: loading it would run its code (here: make a file)."""
    marker, ckpt = tmp_path / "ran", tmp_path / "ckpt.pt"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"config": {}, "model": Payload()}, ckpt)
    proc = subprocess.run(cli("--out", str(tmp_path / "run"), "--checkpoint", str(ckpt)), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and not marker.exists()
    assert proc.stderr.splitlines() == [
        f"mimetic train: checkpoint {ckpt} is refused: it holds the pickled object posix.system, which could run "
        "code when loaded, and mimetic's checkpoints hold only tensors and plain values; delete it to train the run "
        "from the start"]


def test_gradient_accumulation_keeps_the_global_batch(tmp_path):
    cfg = dict(dataset="digits", model="vit_digits", epochs=2, batch_size=256, warmup_epochs=1, lr=2e-3)
    one = train(TrainConfig(**cfg), tmp_path / "a", log=lambda s: None)
    four = train(TrainConfig(**cfg, accum_steps=4), tmp_path / "b", log=lambda s: None)
    assert four["final_test_loss"] == pytest.approx(one["final_test_loss"], rel=1e-4)


def test_bad_accumulation_is_rejected_before_training():
    with pytest.raises(ValueError, match="batch_size=100 is not divisible by accum_steps=3"):
        TrainConfig(dataset="digits", model="vit_digits", batch_size=100, accum_steps=3).validate()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_named_models_build_with_their_geometry(name):
    cfg = geometry(name)
    model = build_vit(name, num_classes=7, in_chans=3)
    assert model.patch_embed.img_size == (cfg["img_size"],) * 2
    assert len(model.blocks) == cfg["depth"] and model.embed_dim == cfg["embed_dim"]
    assert model.blocks[0].attn.num_heads == cfg["num_heads"]
    assert model.head.out_features == 7


def test_pool_and_position_embedding_choices():
    x = torch.randn(2, 1, 8, 8)
    avg = build_vit("vit_digits", num_classes=10, in_chans=1, pool="avg", pos_embed="sincos")
    assert avg.cls_token is None and not avg.pos_embed.requires_grad
    assert avg.pos_embed.shape == (1, 16, 96)
    # 2-D sin-cos: row 0 and row 1 of the 4x4 grid differ, and the table is not random.
    table = avg.pos_embed[0]
    assert table.abs().max() <= 1.0 and not torch.allclose(table[0], table[4])
    token = build_vit("vit_digits", num_classes=10, in_chans=1, pool="token", pos_embed="learned")
    assert token.cls_token is not None and token.pos_embed.requires_grad
    assert avg(x).shape == token(x).shape == (2, 10)


def test_fixed_position_embeddings_do_not_train(tmp_path):
    cfg = TrainConfig(dataset="digits", model="vit_digits", epochs=1, batch_size=256, warmup_epochs=0,
                      pos_embed="sincos")
    before = build_model(cfg, num_classes=10, in_chans=1).pos_embed.detach().clone()
    train(cfg, tmp_path, log=lambda s: None)
    assert torch.equal(load_file(tmp_path / "final.safetensors")["pos_embed"], before)


def test_two_arms_at_one_seed_differ_only_in_attention_weights_at_step_0():
    base = dict(dataset="digits", model="vit_digits", seed=4)
    default = build_model(TrainConfig(**base, init="default").validate(), num_classes=10, in_chans=1).state_dict()
    mimetic = build_model(TrainConfig(**base, init="mimetic").validate(), num_classes=10, in_chans=1).state_dict()
    differ = {name for name in default if not torch.equal(default[name], mimetic[name])}
    assert differ == {f"blocks.{i}.attn.{w}.weight" for i in range(4) for w in ("qkv", "proj")}
