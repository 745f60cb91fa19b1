"""Crashes as a user meets them, and the recovery docs/training.md documents: kill -9 of the
whole workflow mid-training, a kill during output writing, pre-emption (SIGTERM to every
process), redoing one run, a bad record."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
CONFIG = {
    "seeds": [0],
    "arms": {"default": {"init": "default"}, "mimetic": {"init": "mimetic"}},
    "experiments": {"digits": {"dataset": "digits", "model": "vit_digits", "epochs": 4, "batch_size": 256,
                               "warmup_epochs": 1, "lr": 0.002, "gpus": 0}},
}
RUN = "results/runs/digits/mimetic/seed0"
EXACT = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]  # not timings


def command(work: Path, *args: str) -> list[str]:
    (work / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work),
            "--configfile", str(work / "config.yaml"), *args]


def snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(work, *args), capture_output=True, text=True, timeout=900, env=ENV)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    work = tmp_path_factory.mktemp("reference")
    proc = snakemake(work, "--cores", "2", "tables")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def same_run(a: Path, b: Path) -> None:
    pd.testing.assert_frame_equal(pd.read_csv(a / RUN / "metrics.csv")[EXACT],
                                  pd.read_csv(b / RUN / "metrics.csv")[EXACT])
    wa, wb = load_file(a / RUN / "final.safetensors"), load_file(b / RUN / "final.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_kill_9_mid_training_then_the_documented_recovery(tmp_path, reference):
    work = tmp_path / "work"
    work.mkdir()
    # The whole workflow dies at once (kill -9 of its process group: a crash, a lost node).
    proc = subprocess.Popen(command(work, "--cores", "2", "tables"), env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = work / "results/checkpoints/digits/mimetic/seed0.pt"
    deadline = time.monotonic() + 600
    while not checkpoint.exists():  # at least one epoch of that run is done and on disk
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (work / RUN / "summary.json").exists()
    # A kill during an atomic write leaves its temporary file behind.
    (work / RUN).mkdir(parents=True, exist_ok=True)
    (work / RUN / ".metrics.csv.x1y2z3.tmp").write_bytes(b"")

    # Without --unlock, Snakemake refuses (its lock outlived it): the docs say what to run.
    assert snakemake(work, "--cores", "2", "tables").returncode != 0
    assert snakemake(work, "--unlock").returncode == 0
    recovered = snakemake(work, "--cores", "2", "--rerun-incomplete", "tables")
    assert recovered.returncode == 0, recovered.stderr[-3000:]

    log = (work / "logs/train/digits/mimetic/seed0.log").read_text()
    assert "resumed from" in log  # not trained again from scratch
    same_run(work, reference)
    assert not list((work / "results").rglob("*.tmp")) and not list((work / "results").rglob(".*.tmp"))


def test_sigterm_to_every_process_as_slurm_does_then_the_same_command(tmp_path, reference):
    """Pre-emption: SLURM signals every process of the job (Snakemake, the run); Snakemake waits
    for its jobs, each run writes its checkpoint and exits 75; the same command resumes them."""
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen(command(work, "--cores", "2", "tables"), env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    checkpoint = work / "results/checkpoints/digits/mimetic/seed0.pt"
    deadline = time.monotonic() + 600
    while not checkpoint.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) != 0
    # The run's own status, not a shell's death by the signal (143): the rule execs the run, so
    # Snakemake waits for the checkpoint instead of seeing the job end at once.
    assert "exit status 75" in proc.stderr.read()
    log = (work / "logs/train/digits/mimetic/seed0.log").read_text()
    assert "mimetic train: stopped by SIGTERM" in log and checkpoint.is_file(), log[-2000:]
    assert not (work / RUN / "summary.json").exists()

    again = snakemake(work, "--cores", "2", "tables")  # no lock left behind: the same command
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in (work / "logs/train/digits/mimetic/seed0.log").read_text()
    same_run(work, reference)


def test_redo_one_run_the_documented_way(tmp_path, reference):
    work = tmp_path / "work"
    subprocess.run(["cp", "-a", str(reference), str(work)], check=True)
    subprocess.run(["rm", "-r", str(work / RUN)], check=True)
    # Snakemake alone does not notice (the tables are up to date): the documented command does.
    plan = snakemake(work, "-n", "--cores", "2", "--forcerun", f"{RUN}/summary.json", "tables")
    assert "train_run        1" in plan.stdout or " train_run" in plan.stdout, plan.stdout[-2000:]
    assert snakemake(work, "--cores", "2", "--forcerun", f"{RUN}/summary.json", "tables").returncode == 0
    same_run(work, reference)
    runs = pd.read_csv(work / "results/tables/runs.csv")
    assert len(runs) == 2


def test_a_malformed_record_leaves_the_previous_tables(tmp_path, reference):
    work = tmp_path / "work"
    subprocess.run(["cp", "-a", str(reference), str(work)], check=True)
    tables = {p.name: p.read_bytes() for p in (work / "results/tables").iterdir() if p.suffix in (".csv", ".md")}
    (work / RUN / "summary.json").write_text('{"seed": 0, ')
    proc = snakemake(work, "--cores", "2", "tables")
    assert proc.returncode != 0
    said = proc.stdout + proc.stderr + (work / "logs/check_records.log").read_text()
    assert f"{RUN}/summary.json: not valid JSON" in said
    for name, content in tables.items():
        assert (work / "results/tables" / name).read_bytes() == content, name
