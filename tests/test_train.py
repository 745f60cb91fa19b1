"""Training runs: outputs, consistency, resume, failure modes, CLI validation."""

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from mimetic import cli
from mimetic.data import load_dataset
from mimetic.train import Batches, TrainConfig, build_model, evaluate, train

COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s", "wall_time"]


def tiny(**kw) -> TrainConfig:
    base = dict(dataset="digits", model="vit_digits", epochs=3, batch_size=256, warmup_epochs=1, lr=2e-3,
                crop_padding=1, arm="mimetic")
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    summary = train(tiny(), out, checkpoint=out / "ckpt.pt", log=lambda s: None)
    return out, summary


def test_run_folder_contents_are_complete_and_consistent(finished):
    out, summary = finished
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns) == COLUMNS
    assert metrics["epoch"].tolist() == [1, 2, 3]
    assert metrics.notna().all().all()
    assert (metrics["wall_time"].diff().dropna() > 0).all()
    assert metrics["lr"].iloc[0] < metrics["lr"].iloc[1]  # warm-up, then cosine decay
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["final_test_acc"] == pytest.approx(metrics["test_acc"].iloc[-1])
    assert on_disk["best_test_acc"] == pytest.approx(metrics["test_acc"].max())
    assert on_disk["config"]["arm"] == on_disk["arm"] == "mimetic"
    assert on_disk["init_params"] == {"alpha1": 0.7, "beta1": 0.7, "alpha2": 0.4, "beta2": 0.4, "dist": "normal"}
    assert {"torch", "timm", "git_commit", "git_dirty", "source_sha256", "python"} <= set(on_disk["environment"])
    assert on_disk["device"] and on_disk["epochs"] == 3 and on_disk["seed"] == 0
    assert not (out / "ckpt.pt").exists()  # removed once the outputs are complete
    assert not list(out.glob(".*.tmp"))


def test_saved_weights_reproduce_the_final_accuracy(finished):
    out, summary = finished
    cfg = tiny()
    data = load_dataset("digits")
    model = build_model(cfg, data)
    model.load_state_dict(load_file(out / "final.safetensors"))
    batches = Batches(data, cfg, torch.device("cpu"))
    _, acc = evaluate(model, data.test_x, data.test_y, batches.normalize, 512, amp=False)
    assert acc == pytest.approx(summary["final_test_acc"])


def test_resume_after_interruption_gives_the_same_run(tmp_path, finished):
    _, reference = finished

    def stop_after_first_epoch(line: str) -> None:
        if line.startswith("epoch 2/"):
            raise KeyboardInterrupt  # dies before epoch 2's checkpoint: epoch 1 is on disk

    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        train(tiny(), tmp_path / "run", checkpoint=ckpt, log=stop_after_first_epoch)
    assert ckpt.exists() and not (tmp_path / "run" / "summary.json").exists()
    lines = []
    resumed = train(tiny(), tmp_path / "run", checkpoint=ckpt, log=lines.append)
    assert lines[0].startswith(f"resumed from {ckpt} after epoch 1")
    assert len(lines) == 1 + 2  # epochs 2 and 3 only
    for key in ("final_test_acc", "best_test_acc", "final_test_loss"):
        assert resumed[key] == reference[key], key
    ref_w = load_file(finished[0] / "final.safetensors")
    new_w = load_file(tmp_path / "run" / "final.safetensors")
    assert all(torch.equal(ref_w[n], new_w[n]) for n in ref_w)


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        train(tiny(epochs=2), tmp_path / "a", checkpoint=ckpt,
              log=lambda s: (_ for _ in ()).throw(KeyboardInterrupt) if s.startswith("epoch 2/") else None)
    lines = []
    train(tiny(epochs=2, lr=1e-3), tmp_path / "b", checkpoint=ckpt, log=lines.append)
    assert "differs in ['lr']" in lines[0] and "starting from scratch" in lines[0]
    assert len(pd.read_csv(tmp_path / "b" / "metrics.csv")) == 2


def test_non_finite_loss_stops_the_run_without_outputs(tmp_path, monkeypatch):
    import mimetic.train as tr

    real_build = tr.build_model

    def poisoned(cfg, data):
        model = real_build(cfg, data)
        calls = {"n": 0}

        def hook(module, args, output):
            calls["n"] += 1
            return output * float("nan") if calls["n"] == 7 else output  # 5 steps + 1 eval per epoch

        model.head.register_forward_hook(hook)
        return model

    monkeypatch.setattr(tr, "build_model", poisoned)
    with pytest.raises(FloatingPointError, match=r"non-finite training loss at epoch 2 step 1 "):
        train(tiny(), tmp_path / "run", log=lambda s: None)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


@pytest.mark.parametrize("args, message", [
    (["--dataset", "cifar11"], "dataset='cifar11': unknown"),
    (["--epochs", "0"], "epochs=0: must be >= 1"),
    (["--pool", "max"], "pool='max'"),
    (["--arm", "mimetic", "--init-param", "beta2=-1"], "beta2=-1 must be a finite number >= 0"),
    (["--arm", "default", "--init-param", "alpha1=0.5"], "arm 'default' takes no parameter ['alpha1']"),
    (["--label-smoothing", "1.5"], "label_smoothing=1.5"),
])
def test_cli_rejects_bad_options_before_training(tmp_path, args, message):
    base = {"--dataset": "digits", "--model": "vit_digits"}
    argv = ["train", *[x for kv in base.items() if kv[0] not in args for x in kv], *args, "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert message in str(e.value)
    assert not any(tmp_path.iterdir())


def test_model_and_dataset_sizes_must_match(tmp_path):
    with pytest.raises(ValueError, match=r"model='vit_tiny_patch4_32' takes 32px images but dataset='digits' has 8px"):
        train(tiny(model="vit_tiny_patch4_32"), tmp_path)
