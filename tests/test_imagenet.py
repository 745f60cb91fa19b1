"""ImageNet: index a small ImageFolder of real JPEGs, stream it into training, fairly and resumably."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import mimetic.train.loop
from mimetic.data import DatasetError, DatasetUnavailable, data_fingerprint
from mimetic.data.imagenet import index
from mimetic.train import stream
from mimetic.train.stream import EpochSampler, StreamInputs
from mimetic.train.models import build_model
from mimetic.train.recipe import TrainConfig
from mimetic.train.loop import train

from imagenet_data import CORRUPT, WNIDS, folder_mistake, imagenet_folder

EXACT = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]  # not timings
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return imagenet_folder(tmp_path_factory.mktemp("imagenet"))


@pytest.fixture(scope="module")
def indexed(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("index")
    index(folder, out, workers=2, log=lambda s: None)
    return out


def recipe(indexed: Path, **kw) -> TrainConfig:
    # vit_digits: 8 px crops, 4 small layers; the input path is the same at any size
    base = dict(dataset="imagenet", model="vit_digits", data_root=str(indexed), batch_size=8, epochs=2,
                warmup_epochs=1, lr=1e-3, workers=0)
    return TrainConfig(**{**base, **kw}).validate()


def batches(cfg: TrainConfig, n: int, epoch: int = 0, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [b for _, b in zip(range(n), StreamInputs(cfg, CPU).epoch(epoch, start))]


def test_index_leaves_out_the_unreadable_file_by_name(folder, tmp_path):
    lines = []
    meta = index(folder, tmp_path, workers=2, log=lines.append)
    bad = str((folder / CORRUPT).resolve())
    assert list(meta["unreadable"]) == [bad] and "truncated" in meta["unreadable"][bad]
    assert lines == [f"imagenet: left out {bad}: {meta['unreadable'][bad]}"]
    with open(tmp_path / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == meta["train"] == 3 * 8 + 3 and bad not in {r["path"] for r in rows}
    # greyscale, CMYK and a PNG named .JPEG are readable images and stay in
    assert {Path(r["path"]).stem.split("_")[1] for r in rows if r["label"] == "0"} >= {"grey", "cmyk", "png"}
    assert meta["val"] == 9 and meta["classes"] == WNIDS


def test_class_and_per_class_subsets(folder, tmp_path):
    meta = index(folder, tmp_path / "a", classes=2, train_per_class=3, val_per_class=1, workers=1)
    assert meta["classes"] == WNIDS[:2] and (meta["train"], meta["val"]) == (6, 2)
    meta = index(folder, tmp_path / "b", classes=[WNIDS[2], WNIDS[0]], workers=1, log=lambda s: None)
    assert meta["classes"] == [WNIDS[0], WNIDS[2]]  # labels in sorted wnid order
    with open(tmp_path / "b" / "val.csv", newline="") as f:
        assert [(Path(r["path"]).parent.name, r["label"]) for r in csv.DictReader(f)][::3] == [
            (WNIDS[0], "0"), (WNIDS[2], "1")]
    with pytest.raises(DatasetError, match="n09999999"):
        index(folder, tmp_path / "c", classes=["n09999999", WNIDS[0]], workers=1)


def test_directory_links_are_not_followed_and_each_file_is_indexed_once(folder, tmp_path):
    """A directory link back up (train/<wnid>/loop -> ..) reached every file of the split many
    times; a file link is a second path to a file already indexed. Both are left out by name."""
    copy = Path(shutil.copytree(folder, tmp_path / "copy")).resolve()
    loop = copy / "train" / WNIDS[1] / "loop"
    loop.symlink_to("..")
    target, link = copy / "train" / WNIDS[0] / f"{WNIDS[0]}_0.JPEG", copy / "train" / WNIDS[2] / "zz_link.JPEG"
    link.symlink_to(target)
    lines = []
    meta = index(copy, tmp_path / "idx", workers=2, log=lines.append)
    assert meta["left_out"] == {str(link): f"the same file as {target}", str(loop): "a directory link, not followed"}
    assert f"imagenet: left out {loop}: a directory link, not followed" in lines
    assert f"imagenet: left out {link}: the same file as {target}" in lines
    assert json.loads((tmp_path / "idx/meta.json").read_text())["left_out"] == meta["left_out"]
    with open(tmp_path / "idx/train.csv", newline="") as f:
        paths = [r["path"] for r in csv.DictReader(f)]
    assert len(paths) == len({os.path.realpath(p) for p in paths}) == meta["train"] == 3 * 8 + 3
    assert list(meta["unreadable"]) == [str(copy / CORRUPT)]  # reached once, not through the loop


@pytest.mark.parametrize("kind", ["empty", "unreadable", "utf8"])
def test_a_folder_mistake_is_one_line_and_leaves_no_index(folder, tmp_path, monkeypatch, kind):
    """Found in val/, after train/ was scanned: still nothing is written."""
    copy = Path(shutil.copytree(folder, tmp_path / "copy"))
    if kind == "unreadable":  # root reads any folder: os.walk's scandir refuses this one instead
        path, scandir = str(copy.resolve() / "val" / WNIDS[-1]), os.scandir

        def refuses(top="."):
            if os.fspath(top) == path:
                raise PermissionError(13, "Permission denied", path)
            return scandir(top)

        monkeypatch.setattr(os, "scandir", refuses)
        expected = (f"cannot read the folder {path} (Permission denied); make it readable (chmod -R u+rX {path}) "
                    "or leave the class out with the config key data.imagenet.classes")
    else:
        path = folder_mistake(copy, kind)
        expected = {"empty": f"{path} holds no image files",
                    "utf8": f"{path} is not a valid UTF-8 file name; rename it"}[kind]
    out = tmp_path / "idx"
    out.mkdir()
    with pytest.raises(DatasetError) as e:
        index(copy, out, workers=1, log=lambda s: None)
    assert expected in str(e.value) and "\n" not in str(e.value)
    assert list(out.iterdir()) == []


def test_every_image_comes_out_rgb_at_the_model_size(indexed):
    x, y = next(iter(StreamInputs(recipe(indexed, batch_size=27), CPU).epoch(0)))
    assert x.shape == (27, 3, 8, 8) and sorted(y.tolist()) == [0] * 11 + [1] * 8 + [2] * 8
    test = list(StreamInputs(recipe(indexed, eval_batch_size=4), CPU).test())
    assert [len(yb) for _, yb in test] == [4, 4, 1]
    assert torch.cat([yb for _, yb in test]).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # centre crops keep each class's colour: the dominant channel is the label
    x = torch.cat([xb for xb, _ in test])
    assert x.mean(dim=(2, 3)).argmax(1).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_two_arms_at_one_seed_receive_identical_batches(indexed):
    """Images, labels and augmentation draws depend on (seed, epoch, step/image) only: not on the
    arm, the model's RNG, or the number of loader workers."""
    deit = dict(randaugment="rand-m9-mstd0.5-inc1", random_erasing=0.25, mixup=0.8, cutmix=1.0,
                interpolation="bicubic", label_smoothing=0.1, drop_path=0.1)
    default, mimetic_ = recipe(indexed, init="default", **deit), recipe(indexed, init="mimetic", workers=2, **deit)
    first = batches(default, 3)
    build_model(mimetic_, num_classes=3, in_chans=3)  # draws from the global RNG, as a run does
    torch.rand(7)
    second = batches(mimetic_, 3)
    for (x, y), (x2, y2) in zip(first, second, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    other = batches(recipe(indexed, seed=1, **deit), 1)
    assert not torch.equal(first[0][0], other[0][0])
    later = batches(default, 1, epoch=1)
    assert not torch.equal(first[0][0], later[0][0])


def test_a_resumed_epoch_starts_at_the_same_step(indexed):
    cfg = recipe(indexed, randaugment="rand-m9-mstd0.5-inc1", random_erasing=0.25, mixup=0.8)
    whole = batches(cfg, 3)
    tail = batches(cfg, 2, start=1)
    for (x, y), (x2, y2) in zip(whole[1:], tail, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)


def test_cpu_and_device_decoding_give_the_same_crops(indexed):
    """The "device" path (torchvision decode + crop on the training device; here the CPU) takes the
    crop boxes and flips of the "cpu" path (PIL in the workers): pixels within a grey level."""
    for interpolation in ("bilinear", "bicubic"):
        cpu = StreamInputs(recipe(indexed, batch_size=27, decode="cpu", interpolation=interpolation), CPU)
        dev = StreamInputs(recipe(indexed, batch_size=27, decode="device", interpolation=interpolation), CPU)
        (x, y), = list(cpu.epoch(0))
        (x2, y2), = list(dev.epoch(0))
        assert torch.equal(y, y2)
        grey = stream.STD.view(3, 1, 1) * 255  # a normalized difference in grey levels
        assert ((x - x2) * grey).abs().max() <= 1.01
        t, t2 = next(iter(cpu.test())), next(iter(dev.test()))
        assert ((t[0] - t2[0]) * grey).abs().max() <= 1.01


def test_sampler_ranks_split_each_global_batch():
    whole = list(EpochSampler(20, 6, seed=3))
    shards = [list(EpochSampler(20, 6, seed=3, rank=r, world=2)) for r in range(2)]
    assert len(whole) == 3
    for step, batch in enumerate(whole):
        assert shards[0][step] + shards[1][step] == batch


def test_resumed_run_equals_uninterrupted_run(indexed, tmp_path, monkeypatch):
    """Killed mid-epoch after a step checkpoint, then resumed: the same metrics and weights."""
    cfg = recipe(indexed, epochs=2, checkpoint_steps=1, randaugment="rand-m9-mstd0.5-inc1", random_erasing=0.25,
                 mixup=0.8, drop_path=0.1)
    quiet = dict(log=lambda s: None, device="cpu")
    reference = train(cfg, tmp_path / "ref", **quiet)

    real_step, calls = mimetic.train.loop.train_step, []

    def dies_at_step_5(*args, **kw):  # epoch 2, step 2 of 3: after the checkpoint of step 1
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_step(*args, **kw)

    ckpt = tmp_path / "ckpt.pt"
    monkeypatch.setattr(mimetic.train.loop, "train_step", dies_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run", checkpoint=ckpt, **quiet)
    assert torch.load(ckpt, weights_only=False)["step"] == 1
    monkeypatch.setattr(mimetic.train.loop, "train_step", real_step)
    lines = []
    resumed = train(cfg, tmp_path / "run", checkpoint=ckpt, log=lines.append, device="cpu")
    assert lines[0] == f"resumed from {ckpt} at epoch 2 step 1"
    assert resumed["final_test_acc"] == reference["final_test_acc"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "run/metrics.csv")[EXACT],
                                  pd.read_csv(tmp_path / "ref/metrics.csv")[EXACT])
    a, b = load_file(tmp_path / "run/final.safetensors"), load_file(tmp_path / "ref/final.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["decode"] == "cpu" and summary["config"]["dataset"] == "imagenet"


def test_two_process_ddp_matches_one_process(indexed, tmp_path):
    """`gpus: N` under torchrun: each rank loads its share of every global batch (here two CPU
    processes, gloo). With crop and flip only (the ResNet-style recipe) both see the same images."""
    cfg = recipe(indexed, batch_size=8, eval_batch_size=4).to_dict()
    cmd = [sys.executable, "-m", "mimetic", "train", "--recipe", json.dumps(cfg), "--gpus", "0", "--threads", "1"]
    for name, extra in (("one", []), ("two", ["--processes", "2"])):
        proc = subprocess.run([*cmd, "--out", str(tmp_path / name), *extra], capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    one, two = (pd.read_csv(tmp_path / name / "metrics.csv") for name in ("one", "two"))
    for col in ("train_loss", "test_loss", "train_acc", "test_acc"):
        assert two[col].to_numpy() == pytest.approx(one[col].to_numpy(), rel=1e-4), col
    assert json.loads((tmp_path / "two/summary.json").read_text())["processes"] == 2


def broken_index(folder: Path, tmp_path: Path) -> tuple[Path, Path]:
    """An index (its folder) whose first training file was truncated after indexing, and that file."""
    copy = tmp_path / "copy"
    copy.mkdir(parents=True)
    index(folder, tmp_path / "idx", classes=2, train_per_class=2, workers=1, log=lambda s: None)
    rows = (tmp_path / "idx/train.csv").read_text().splitlines()
    victim = Path(rows[1].split(",")[0])
    broken = copy / victim.name
    broken.write_bytes(victim.read_bytes()[:100])
    (tmp_path / "idx/train.csv").write_text("\n".join([rows[0], f"{broken},0", *rows[2:]]) + "\n")
    return tmp_path / "idx", broken


def test_a_file_that_breaks_after_indexing_is_named(folder, tmp_path):
    """In one line, also from a DataLoader worker (torch re-raises a worker's exception with the
    worker's traceback as its message)."""
    idx, broken = broken_index(folder, tmp_path)
    for workers in (0, 2):
        with pytest.raises(DatasetError, match=str(broken)) as e:
            batches(recipe(idx, batch_size=4, workers=workers), 1)
        assert "\n" not in str(e.value), workers


def test_folder_mistakes_end_the_commands_in_one_line(folder, tmp_path):
    """What a user sees: `mimetic prepare` on an empty class folder and on a name that is not UTF-8,
    `mimetic train` (loader workers) on a file broken after indexing; one line each, exit status 1."""
    idx, broken = broken_index(folder, tmp_path / "train")
    cfg = recipe(idx, batch_size=4, workers=2).to_dict()
    commands = {f"cannot read {broken}": ["train", "--recipe", json.dumps(cfg), "--gpus", "0", "--threads", "1",
                                          "--out", str(tmp_path / "run")]}
    for kind in ("empty", "utf8"):
        copy = Path(shutil.copytree(folder, tmp_path / kind))
        path = folder_mistake(copy, kind)
        commands[path] = ["prepare", "imagenet", "--root", str(copy), "--workers", "1", "--train",
                          str(tmp_path / kind / "idx/train.csv"), "--test", str(tmp_path / kind / "idx/val.csv"),
                          "--meta", str(tmp_path / kind / "idx/meta.json")]
    procs = {named: subprocess.Popen([sys.executable, "-m", "mimetic", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True) for named, args in commands.items()}
    for named, proc in procs.items():  # run side by side: each start imports torch
        _, err = proc.communicate(timeout=300)
        command = commands[named][0]
        assert proc.returncode == 1 and err.count("\n") == 1, err[-3000:]
        assert err.startswith(f"mimetic {command}: imagenet: ") and named in err and "Traceback" not in err
    assert not any((tmp_path / kind / "idx").exists() for kind in ("empty", "utf8"))


def test_missing_index_and_folder_name_what_to_do(tmp_path):
    with pytest.raises(DatasetUnavailable, match="data.imagenet.root"):
        index(None, tmp_path)
    with pytest.raises(DatasetUnavailable, match=str(tmp_path / "nowhere")):
        index(tmp_path / "nowhere", tmp_path)
    with pytest.raises(DatasetUnavailable, match="not indexed"):
        StreamInputs(recipe(tmp_path), CPU)


@pytest.mark.parametrize("key, value", [("crop_padding", 4)])
def test_keys_of_in_memory_datasets_are_refused(indexed, key, value):
    with pytest.raises(ValueError, match=f"{key}=.*does not apply to dataset='imagenet'"):
        recipe(indexed, **{key: value})
    with pytest.raises(ValueError, match="decode='device' does not apply to dataset='digits'"):
        TrainConfig(dataset="digits", model="vit_digits", decode="device").validate()


# --- through the workflow ------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # jobs use the installed package


def test_workflow_indexes_and_trains_both_arms(folder, tmp_path):
    config = {
        "seeds": [0],
        "arms": {"default": {"init": "default"}, "mimetic": {"init": "mimetic"}},
        "experiments": {"imagenet": {"dataset": "imagenet", "model": "vit_digits", "epochs": 2,
                                     "batch_size": 9, "warmup_epochs": 1, "eval_batch_size": 5, "workers": 1,
                                     "checkpoint_steps": 2, "gpus": 0}},
        "data": {"imagenet": {"root": str(folder)}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([*SNAKEMAKE, "-d", str(tmp_path), "tables", "--configfile", str(tmp_path / "config.yaml"),
                           "--cores", "2"], capture_output=True, text=True, timeout=900, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bad = str((folder / CORRUPT).resolve())
    assert f"left out {bad}" in (tmp_path / "logs/data/imagenet.log").read_text()
    meta = json.loads((tmp_path / "resources/data/imagenet/meta.json").read_text())
    assert (meta["train"], meta["val"], meta["classes"]) == (27, 9, WNIDS)
    runs = pd.read_csv(tmp_path / "results/tables/runs.csv")
    assert sorted(runs["arm"]) == ["default", "mimetic"]
    for arm in ("default", "mimetic"):
        folder_ = tmp_path / f"results/runs/imagenet/{arm}/seed0"
        summary = json.loads((folder_ / "summary.json").read_text())
        assert (summary["experiment"], summary["arm"], summary["init"], summary["seed"]) == ("imagenet", arm, arm, 0)
        assert summary["config"]["dataset"] == "imagenet" and summary["decode"] == "cpu"
        assert summary["parameters"] == sum(t.numel() for t in load_file(folder_ / "final.safetensors").values())
        assert load_file(folder_ / "final.safetensors")["head.weight"].shape == (3, 96)
        metrics = pd.read_csv(folder_ / "metrics.csv")
        assert metrics["epoch"].tolist() == [1, 2] and metrics.notna().all().all()
        assert metrics["test_acc"].iloc[-1] == pytest.approx(summary["final_test_acc"])
        assert (metrics["images_per_s"] > 0).all()
        assert summary["data_fingerprint"] == meta["fingerprint"]

    # The same images at another root: the index is made again, no run is trained again, and the
    # records check passes (the fingerprint is the content's, not the path's).
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    config["data"]["imagenet"]["root"] = str(copy)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    moved = subprocess.run([*SNAKEMAKE, "-d", str(tmp_path), "tables", "--configfile", str(tmp_path / "config.yaml"),
                            "--cores", "2"], capture_output=True, text=True, timeout=900, env=ENV)
    assert moved.returncode == 0, moved.stderr[-3000:]
    assert "prepare_imagenet" in moved.stderr and "train_run" not in moved.stderr, moved.stderr[-3000:]
    # Other images there (one more in a class): no run is trained again, and none is counted.
    shutil.copy(next((copy / "val" / WNIDS[0]).iterdir()), copy / "val" / WNIDS[0] / "extra.JPEG")
    other = subprocess.run([*SNAKEMAKE, "-d", str(tmp_path), "tables", "--configfile", str(tmp_path / "config.yaml"),
                            "--cores", "2", "--forcerun", "prepare_imagenet"], capture_output=True, text=True,
                           timeout=900, env=ENV)
    assert other.returncode != 0 and "train_run" not in other.stderr
    log = (tmp_path / "logs/check_records.log").read_text()
    assert "results/runs/imagenet/default/seed0 was trained on other data than this config's" in log, log


def test_imagenet_config_plans_and_needs_its_root(tmp_path):
    cmd = [*SNAKEMAKE, "-d", str(tmp_path), "-n", "--cores", "1", "--configfile", str(REPO / "config/imagenet.yaml")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode != 0
    assert "config: data.imagenet.root: experiments.imagenet trains on ImageNet" in proc.stdout + proc.stderr
    (tmp_path / "root.yaml").write_text(yaml.safe_dump({"data": {"imagenet": {"root": str(tmp_path)}}}))
    proc = subprocess.run([*cmd, str(tmp_path / "root.yaml")], capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert counts["prepare_imagenet"] == "1"
    assert counts["train_run"] == str(2 * 2 * 3)  # experiments x arms x seeds


def test_a_jpeg_the_device_decoder_rejects_is_read_with_pil(indexed, monkeypatch):
    cfg = recipe(indexed, batch_size=27, decode="device")
    (expected, _), = list(StreamInputs(cfg, CPU).epoch(0))
    real, singles = stream.decode_jpeg, []

    def picky(data, **kw):  # rejects every batch, and the first file on its own
        singles.append(not isinstance(data, list))
        if not singles[-1] or sum(singles) == 1:
            raise RuntimeError("nvjpeg: unsupported")
        return real(data, **kw)

    monkeypatch.setattr(stream, "decode_jpeg", picky)
    (x, _), = list(StreamInputs(cfg, CPU).epoch(0))
    assert sum(singles) == 25  # every JPEG on its own (the CMYK and PNG files came decoded)
    assert ((x - expected) * stream.STD.view(3, 1, 1) * 255).abs().max() <= 1.01


# --- batches of a thousand files, and workers that die -------------------------------------------

@pytest.fixture(scope="module")
def thousands(tmp_path_factory) -> Path:
    """1,100 training and 1,100 validation JPEGs, indexed: one batch of 1024 each way."""
    root = tmp_path_factory.mktemp("thousands")
    imagenet_folder(root / "folder", train=367, val=367)
    index(root / "folder", root / "index", workers=2, log=lambda s: None)
    return root / "index"


def test_device_decoding_at_batch_1024_runs_under_the_usual_open_file_limit(thousands, tmp_path):
    """Each batch crosses the worker queue as a few tensors, not one per file: 4 workers at batch
    1024 (training and evaluation) fit in a soft limit of 1024 open files (one file per image hung)."""
    import resource

    cfg = recipe(thousands, batch_size=1024, eval_batch_size=1024, epochs=1, warmup_epochs=0, workers=4,
                 decode="device").to_dict()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    proc = subprocess.run([sys.executable, "-m", "mimetic", "train", "--recipe", json.dumps(cfg), "--gpus", "0",
                           "--threads", "1", "--out", str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=300, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard)))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["decode"] == "device" and summary["epochs"] == 1
    assert pd.read_csv(tmp_path / "run/metrics.csv")["test_acc"].notna().all()


def test_a_worker_that_dies_stops_the_run_with_the_likely_causes(indexed, monkeypatch):
    import signal
    import time

    monkeypatch.setattr(StreamInputs, "timeout", 5.0)
    inputs = StreamInputs(recipe(indexed, batch_size=4, workers=2), CPU, prefetch=0)
    batches = inputs.epoch(0)
    next(batches)
    # torch's SIGCHLD handler set aside while the workers die: it would raise at whatever line runs
    # when the signal arrives (the kill loop, pytest's own code; blocking the signal in this thread
    # does not stop xdist's threads from taking it). The loader then finds the dead workers by its
    # status check or a broken handover, as a trainer blocked on a batch would.
    handler = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        for worker in inputs.train_loader._iterator._workers:
            os.kill(worker.pid, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(DatasetError, match=r"DataLoader workers stopped .*ulimit -n"):
            list(batches)
        assert time.monotonic() - t0 < 30
    finally:
        signal.signal(signal.SIGCHLD, handler)
    subprocess.run(["true"], check=True)  # a child's exit: the dead workers are no longer watched


@pytest.mark.parametrize("error", [EOFError(), ConnectionResetError(104, "Connection reset by peer"),
                                   RuntimeError("DataLoader worker (pid 7) is killed by signal: Killed.")])
def test_every_sign_of_a_dead_worker_becomes_the_one_error(error):
    """A worker killed while it hands over a batch's shared memory breaks the handover (EOFError,
    ConnectionResetError) instead of torch's RuntimeError; each is the same DatasetError."""
    class Loader:
        _iterator = None

        def __iter__(self):
            raise error
            yield

    with pytest.raises(DatasetError, match=rf"DataLoader workers stopped \({type(error).__name__}: .*ulimit -n"):
        next(StreamInputs._loaded(None, Loader()))


def test_the_fingerprint_is_the_index_content_not_the_copys_root(folder, tmp_path):
    """Rows as (path relative to the root, label, size) and the classes: a copy elsewhere is the same
    data; a renamed, re-encoded, added or removed image or another subset is other data."""
    def fingerprint(root: Path, name: str, **kw) -> str:
        meta = index(root, tmp_path / name, workers=1, log=lambda s: None, **kw)
        assert data_fingerprint(tmp_path / name / "meta.json") == meta["fingerprint"]
        return meta["fingerprint"]

    first = fingerprint(folder, "first")
    assert fingerprint(folder, "again") == first
    copy = Path(shutil.copytree(folder, tmp_path / "elsewhere" / "copy"))
    assert fingerprint(copy, "copy") == first
    two = fingerprint(folder, "two", classes=2)
    assert fingerprint(folder, "two_by_name", classes=WNIDS[:2]) == two
    seen = {first, two, fingerprint(folder, "fewer", train_per_class=5)}
    image = copy / "train" / WNIDS[2] / f"{WNIDS[2]}_0.JPEG"
    renamed = image.rename(image.with_name(f"{WNIDS[2]}_renamed.JPEG"))
    seen.add(fingerprint(copy, "renamed"))
    size = renamed.stat().st_size
    Image.open(renamed).convert("RGB").save(renamed, quality=40)  # still readable, another size
    assert renamed.stat().st_size != size
    seen.add(fingerprint(copy, "reencoded"))
    shutil.copyfile(renamed, renamed.with_name(f"{WNIDS[2]}_added.JPEG"))
    seen.add(fingerprint(copy, "added"))
    (copy / "val" / WNIDS[0] / f"{WNIDS[0]}_1.JPEG").unlink()
    seen.add(fingerprint(copy, "removed"))
    assert len(seen) == 7  # each change other data
