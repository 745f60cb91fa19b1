"""Training runs: outputs, consistency, resume, failure modes, CLI validation."""

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from mimetic import cli

from mimetic.train import launch
from mimetic.data import load_dataset
from mimetic.train.models import build_model
from mimetic.train.recipe import TrainConfig
from mimetic.train.inputs import MemoryInputs
from mimetic.train.loop import evaluate, train

COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s", "wall_time"]


def tiny(**kw) -> TrainConfig:
    base = dict(dataset="digits", model="vit_digits", epochs=3, batch_size=256, warmup_epochs=1, lr=2e-3,
                crop_padding=1, init="mimetic")
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
    assert on_disk["config"]["init"] == on_disk["init"] == "mimetic"
    # Identity labels default to the dataset and the init outside the workflow.
    assert (on_disk["experiment"], on_disk["arm"]) == ("digits", "mimetic")
    assert on_disk["init_params"] == {"alpha1": 0.7, "beta1": 0.7, "alpha2": 0.4, "beta2": 0.4, "dist": "normal"}
    assert {"torch", "timm", "git_commit", "git_dirty", "source_sha256", "python"} <= set(on_disk["environment"])
    assert on_disk["device"] and on_disk["epochs"] == 3 and on_disk["seed"] == 0
    assert not (out / "ckpt.pt").exists()  # removed once the outputs are complete
    assert not list(out.glob(".*.tmp"))


def test_init_json_agrees_with_the_rebuilt_initial_weights(finished):
    """init.json, recomputed here from the run's rebuilt initial model and the model's own init of
    the same seed, through the raw qkv / proj weights."""
    from mimetic.train.models import run_model

    out, summary = finished
    record = json.loads((out / "init.json").read_text())
    model = run_model(summary, out / "final.safetensors", "init")
    own = run_model({**summary, "config": {**summary["config"], "init": "default", "init_params": {}}},
                    out / "final.safetensors", "init")
    assert record["init"] == "mimetic" and record["touches"] == ["q", "k", "v", "proj"]
    sd, own_sd = model.state_dict(), own.state_dict()
    d = sd["blocks.0.attn.proj.weight"].shape[0]
    for name in sd:
        if name.endswith("attn.qkv.weight"):
            for i, part in enumerate("qkv"):
                layer = name.removesuffix(".qkv.weight")
                assert record["changed"][f"{layer}[{part}]"] == (not torch.equal(sd[name][i * d:(i + 1) * d],
                                                                                 own_sd[name][i * d:(i + 1) * d]))
        elif name.endswith("attn.proj.weight"):
            assert record["changed"][name.replace(".proj.weight", "[proj]")] is True
        elif name in record["changed"]:
            assert record["changed"][name] is False and torch.equal(sd[name], own_sd[name]), name
    heads = model.blocks[0].attn.num_heads
    for layer, stats in enumerate(record["layers"]):
        w = sd[f"blocks.{layer}.attn.qkv.weight"].double()
        q, k, v = w[:d].T, w[d:2 * d].T, w[2 * d:].T
        vo = v @ sd[f"blocks.{layer}.attn.proj.weight"].double().T
        hk = d // heads
        qk = [q[:, h * hk:(h + 1) * hk] @ k[:, h * hk:(h + 1) * hk].T for h in range(heads)]
        off = ~torch.eye(d, dtype=torch.bool)
        assert stats["qk_diag_mean"] == pytest.approx(sum(p.diagonal().mean() for p in qk).item() / heads, rel=1e-4)
        assert stats["qk_offdiag_abs_mean"] == pytest.approx(sum(p[off].abs().mean() for p in qk).item() / heads,
                                                             rel=1e-4)
        assert stats["vo_diag_mean"] == pytest.approx(vo.diagonal().mean().item(), rel=1e-4)
        assert stats["vo_offdiag_abs_mean"] == pytest.approx(vo[off].abs().mean().item(), rel=1e-4)


def test_saved_weights_reproduce_the_final_accuracy(finished):
    out, summary = finished
    cfg = tiny()
    data = load_dataset("digits")
    model = build_model(cfg, num_classes=data.num_classes, in_chans=data.channels)
    model.load_state_dict(load_file(out / "final.safetensors"))
    _, acc = evaluate(model, MemoryInputs(cfg, torch.device("cpu"), data=data).test(), amp=False)
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


@pytest.fixture(scope="module")
def after_epoch_1(tmp_path_factory):
    """A checkpoint of tiny() after its first epoch (the run stopped before its second)."""
    folder = tmp_path_factory.mktemp("after1")
    with pytest.raises(KeyboardInterrupt):
        train(tiny(), folder / "run", checkpoint=folder / "ckpt.pt",
              log=lambda s: (_ for _ in ()).throw(KeyboardInterrupt) if s.startswith("epoch 2/") else None)
    return folder / "ckpt.pt"


def _flip_a_weight_byte(path):
    """Flip one byte inside the largest tensor's data: the zip and the pickle stay readable."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as z:
        entry = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[entry.header_offset + 26:entry.header_offset + 30])
    raw[entry.header_offset + 30 + name_len + extra_len + entry.file_size // 2] ^= 0x40
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "flipped byte"])
def test_a_damaged_checkpoint_is_named_and_moved_aside(after_epoch_1, tmp_path, damage):
    from mimetic.train.checkpoint import read

    path = tmp_path / "ckpt.pt"
    path.write_bytes(after_epoch_1.read_bytes())
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(bytes(range(256)) * 64)
    else:
        _flip_a_weight_byte(path)
    said = []
    assert read(path, torch.device("cpu"), said.append) is None
    assert not path.exists() and (tmp_path / "ckpt.pt.damaged").is_file()
    assert len(said) == 1 and said[0].startswith(f"checkpoint {path} is damaged (") and said[0].endswith(
        f"moved to {path}.damaged; the run trains from the start"), said
    if damage == "flipped byte":
        assert "its checksum does not match its contents" in said[0]


def test_a_run_with_a_damaged_checkpoint_trains_from_the_start_to_the_same_result(after_epoch_1, finished,
                                                                                  tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(after_epoch_1.read_bytes()[:1000])
    said = []
    summary = train(tiny(), tmp_path / "run", checkpoint=ckpt, log=said.append)
    assert "is damaged" in said[0] and len(said) == 1 + 3  # all three epochs trained
    assert summary["final_test_acc"] == finished[1]["final_test_acc"]


def test_a_checkpoint_without_a_key_added_since_at_its_default_resumes(after_epoch_1, tmp_path):
    """A code update that adds a recipe key at its default keeps the run's checkpoint."""
    from mimetic.train.checkpoint import write

    state = torch.load(after_epoch_1, weights_only=True)
    del state["sha256"], state["config"]["label_smoothing"]  # as if written before the key existed
    ckpt = tmp_path / "ckpt.pt"
    write(ckpt, state)
    said = []
    train(tiny(), tmp_path / "run", checkpoint=ckpt, log=said.append)
    assert said[0] == f"resumed from {ckpt} after epoch 1"


def test_non_finite_loss_stops_the_run_without_outputs(tmp_path, monkeypatch):
    import mimetic.train.loop as tr

    real_build = tr.build_model

    def poisoned(cfg, **shape):
        model = real_build(cfg, **shape)
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

    # Launched as the workflow does, a retry (same recipe, same checkpoint) fails at once
    # instead of training to the same divergence again; another recipe trains.

    ckpt = tmp_path / "ckpt.pt"
    kw = dict(experiment=None, arm=None, checkpoint=str(ckpt), gpus=0, runs_per_gpu=1, processes=None, threads=0,
              argv=[])
    with pytest.raises(launch.LaunchError, match="non-finite training loss at epoch 2"):
        launch.run(tiny().validate(), str(tmp_path / "run"), **kw)
    assert launch.failure_marker(ckpt).is_file()
    monkeypatch.setattr(tr, "build_model", lambda *a, **k: pytest.fail("a known divergence was trained again"))
    with pytest.raises(launch.LaunchError, match=r"failed so before: .*ckpt\.pt\.failed; delete that file"):
        launch.run(tiny().validate(), str(tmp_path / "run"), **kw)
    monkeypatch.setattr(tr, "build_model", real_build)
    launch.run(tiny(lr=1e-3).validate(), str(tmp_path / "run"), **kw)
    assert (tmp_path / "run" / "summary.json").is_file() and not launch.failure_marker(ckpt).exists()


@pytest.mark.parametrize("recipe, message", [
    ({"dataset": "cifar11"}, "dataset='cifar11': unknown"),
    ({"epochs": 0}, "epochs=0: must be >= 1"),
    ({"pool": "max"}, "pool='max'"),
    ({"init": "mimetic", "init_params": {"alpha2": -1}}, "alpha2=-1 must be >= 0"),
    ({"init": "impulse"}, "init 'impulse' needs pos_embed: learned"),
    ({"init": "default", "init_params": {"alpha1": 0.5}}, "init 'default' takes no parameter ['alpha1']"),
    ({"label_smoothing": 1.5}, "label_smoothing=1.5"),
    ({"epoch": 3}, "--recipe has unknown key(s) ['epoch']"),
])
def test_cli_rejects_bad_options_before_training(tmp_path, recipe, message):
    argv = ["train", "--recipe", json.dumps({"dataset": "digits", "model": "vit_digits", **recipe}),
            "--gpus", "0", "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert message in str(e.value)
    assert not any(tmp_path.iterdir())


def test_a_gpu_run_without_cuda_fails_at_once_in_one_line(tmp_path):
    """(CI has no GPU.) No traceback, no lock, no run folder: one line naming the problem."""
    import subprocess
    import sys
    import time

    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mimetic", "train", "--recipe",
                           '{"dataset": "digits", "model": "vit_digits"}', "--gpus", "1", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and time.monotonic() - start < 30
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "asks for 1 GPU(s)" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_processes_other_than_one_per_gpu_are_refused(tmp_path):
    argv = ["train", "--recipe", '{"dataset": "digits", "model": "vit_digits"}', "--gpus", "2", "--processes", "3",
            "--out", str(tmp_path / "r")]
    with pytest.raises(SystemExit, match=r"--processes=3 with --gpus=2: a data-parallel run has one process per GPU"):
        cli.main(argv)


def test_compile_without_a_c_compiler_stops_in_the_first_second(tmp_path, monkeypatch):
    assert launch.compiler_missing() is None  # this machine (and CI) has gcc and Python's headers
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no compiler on it
    monkeypatch.delenv("CC", raising=False)
    assert launch.compiler_missing() == "no C compiler on PATH (looked for cc, gcc, clang)"
    with pytest.raises(launch.LaunchError, match=r"compile: true needs a C compiler .*no C compiler on PATH.*"
                                                 r"or set the experiment's `compile: false`"):
        launch.check_compile(tiny(compile=True), gpus=1)
    launch.check_compile(tiny(compile=True), gpus=0)  # the CPU never compiles
    launch.check_compile(tiny(), gpus=1)


def test_model_and_dataset_sizes_must_match(tmp_path):
    with pytest.raises(ValueError, match=r"model='vit_tiny_patch4_32' takes 32px images but dataset='digits' has 8px"):
        train(tiny(model="vit_tiny_patch4_32"), tmp_path)


def test_accumulation_skips_the_all_reduce_also_through_torch_compile(tmp_path, monkeypatch):
    """DDP under torch.compile's wrapper (which is no DDP instance): every micro-batch but the
    last runs inside no_sync, so gradients are all-reduced once per update."""
    import torch.distributed as td
    from torch import nn

    from mimetic.train.loop import build_optimizer, train_step

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29561")
    td.init_process_group("gloo", rank=0, world_size=1)
    try:
        cfg = tiny(accum_steps=2, batch_size=8)
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        ddp = nn.parallel.DistributedDataParallel(net)
        entered = []
        real = nn.parallel.DistributedDataParallel.no_sync

        def spy(self):
            entered.append(1)
            return real(self)

        monkeypatch.setattr(nn.parallel.DistributedDataParallel, "no_sync", spy)
        model = torch.compile(ddp, backend="eager")
        assert not isinstance(model, nn.parallel.DistributedDataParallel)
        train_step(model, build_optimizer(cfg, net, torch.device("cpu")), torch.randn(8, 1, 8, 8),
                   torch.arange(8), cfg)
        assert entered == [1]  # micro-batch 1 of 2
    finally:
        td.destroy_process_group()


def test_a_training_step_copies_nothing_from_the_host_and_reads_no_device_value():
    """train_step with the device faked as `meta` (where reading a value would fail): with mixup's
    soft targets, clipping and accumulation, the update asks the host for nothing."""
    from mimetic.bench.flops import DeviceWork
    from mimetic.train.loop import build_optimizer, train_step

    cfg = TrainConfig(dataset="synthetic", model="vit_tiny_patch4_32", batch_size=64, clip_grad=3.0, accum_steps=2,
                      amp=False).validate()
    meta = torch.device("meta")
    net = build_model(cfg, num_classes=10, in_chans=3).to(meta)
    optimizer = build_optimizer(cfg, net, meta, fused=False)
    x, y = torch.empty(64, 3, 32, 32, device=meta), torch.empty(64, 10, device=meta)
    train_step(net, optimizer, x, y, cfg)  # the optimizer's state is made on the first step
    with DeviceWork() as work:
        loss, correct = train_step(net, optimizer, x, y, cfg)
    assert work.copies == 0 and loss.device == meta and correct.device == meta
