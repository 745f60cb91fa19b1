"""Starting one run on its devices: checks that fail in the first second, the GPU lease, and
the torchrun relaunch of data-parallel runs. Kept outside the trainer (as timm keeps
`distributed_train.sh` outside its train.py), so `mimetic.train.loop` stays one loop.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import torch

from mimetic import io

from mimetic.train import gpu, preempt
from mimetic.train.recipe import LMConfig, Recipe, TrainConfig, recipe_class


class LaunchError(RuntimeError):
    """A run cannot start (or cannot succeed) here; the message is one line saying why and what to do."""


def check_cuda(gpus: int) -> None:
    """Fail at once, in one line, where a run asks for GPUs that this PyTorch or machine lacks.

    Counts devices through NVML (torch.cuda.device_count), so CUDA is not initialized and the
    lease can still set CUDA_VISIBLE_DEVICES afterwards.
    """
    if gpus == 0:
        return
    if torch.version.cuda is None:
        raise LaunchError(f"the run asks for {gpus} GPU(s) but this PyTorch ({torch.__version__}) is built without "
                          "CUDA; install a CUDA build (the workflow's conda env pins one: see README, 'SLURM and "
                          "conda') or set the experiment's `gpus: 0`")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if torch.cuda.device_count() == 0:
        where = f"CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else "no NVIDIA driver or GPU found"
        raise LaunchError(f"the run asks for {gpus} GPU(s) but this machine shows none ({where}); run it on a GPU "
                          "node or set the experiment's `gpus: 0`")


def compiler_missing() -> str | None:
    """Why torch.compile cannot build its CUDA kernels here, or None: Triton compiles a small C
    launcher with the system's C compiler against Python's headers, and without them the first
    compiled step crashes ("Failed to find C compiler"), minutes into a run."""
    compilers = [c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c]
    if not any(shutil.which(c) for c in compilers):
        return f"no C compiler on PATH (looked for {', '.join(compilers)})"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.is_file():
        return f"no Python headers ({headers} is missing)"
    return None


def check_compile(cfg: Recipe, gpus: int) -> None:
    """Fail in the first second where `compile: true` meets a GPU machine that cannot compile."""
    if not (isinstance(cfg, TrainConfig) and cfg.compile and gpus):
        return
    why = compiler_missing()
    if why:
        raise LaunchError(f"compile: true needs a C compiler and Python's headers for torch.compile's CUDA kernels, "
                          f"but this machine has {why}; install them (e.g. `apt install gcc python3-dev`, or "
                          "`conda install gcc`) or set the experiment's `compile: false`")


def failure_marker(checkpoint: str | os.PathLike) -> Path:
    return Path(f"{checkpoint}.failed")


def _check_previous_failure(cfg: Recipe, checkpoint: str | os.PathLike | None) -> None:
    """A run that diverged fails the same way when resumed from the same checkpoint: a retry
    (Snakemake's `retries`, a resubmitted SLURM job) stops at once instead of training again."""
    if checkpoint is None or not failure_marker(checkpoint).is_file():
        return
    marker = failure_marker(checkpoint)
    record = json.loads(marker.read_text())
    if record["config"] == cfg.computed():
        raise LaunchError(f"{record['error']} (this run failed so before: {marker}; delete that file to try again)")
    marker.unlink()  # the recipe changed since: the old failure says nothing about this run


def record_failure(cfg: Recipe, checkpoint: str | os.PathLike | None, error: BaseException) -> None:
    if checkpoint is not None:
        io.write_json(failure_marker(checkpoint), {"error": str(error), "config": cfg.computed()})


def run(cfg: Recipe, out: str, *, experiment: str | None, arm: str | None, checkpoint: str | None,
        gpus: int | None, runs_per_gpu: int, processes: int | None, threads: int, argv: list[str]) -> None:
    """Train one run: here in this process, or under torchrun with one process per GPU.

    cfg: validated (recipe_from_json's). argv: this command's own arguments, re-used for the
    torchrun workers.
    """
    if gpus is not None and gpus < 0 or processes is not None and processes < 1:
        raise ValueError(f"--gpus={gpus} must be >= 0 and --processes={processes} >= 1")
    worker = "WORLD_SIZE" in os.environ  # under torchrun: the launcher below chose the devices
    if gpus is None:
        gpus = 1 if torch.cuda.device_count() > 0 else 0
    if isinstance(cfg, LMConfig) and (gpus > 1 or (processes or 1) > 1):
        raise ValueError(f"--gpus={gpus} --processes={processes}: a language-model run takes one device; set the "
                         "experiment's `gpus` to 0 or 1")
    if gpus and processes is not None and processes != gpus and not worker:
        raise ValueError(f"--processes={processes} with --gpus={gpus}: a data-parallel run has one process per GPU; "
                         f"drop --processes (or give --processes {gpus})")
    if checkpoint is not None and Path(checkpoint).is_dir():
        raise LaunchError(f"--checkpoint {checkpoint} is a folder: give the checkpoint's file, e.g. "
                          f"{Path(checkpoint) / 'run.pt'}")
    check_cuda(gpus)
    check_compile(cfg, gpus)
    _check_previous_failure(cfg, checkpoint)
    if threads:
        torch.set_num_threads(threads)
    # Held until this process exits; the kernel frees it even on SIGKILL.
    lease = gpu.claim(gpus, slots=runs_per_gpu, log=_print) if gpus and not worker else None
    if lease:
        _print(f"GPU(s) {','.join(lease.devices)} (CUDA_VISIBLE_DEVICES)")
    nproc = processes or max(gpus, 1)
    if worker or nproc == 1:
        try:
            _train(cfg, out, experiment=experiment, arm=arm, checkpoint=checkpoint,
                   device="cuda" if gpus else "cpu", log=_print)
        except FloatingPointError as e:
            record_failure(cfg, checkpoint, e)
            raise LaunchError(str(e)) from e
    else:
        _torchrun(nproc, [*argv, f"--gpus={gpus}"])


def _train(cfg: Recipe, out: str, **kwargs: Any) -> None:
    """The trainer of the recipe's kind: a ViT's epochs (mimetic.train.loop) or a GPT's steps (mimetic.train.lm)."""
    if isinstance(cfg, LMConfig):
        from mimetic.train.lm import train_lm

        train_lm(cfg, out, **kwargs)
    else:
        from mimetic.train.loop import train

        train(cfg, out, **kwargs)


def _print(line: str) -> None:
    print(line, flush=True)


def _torchrun(nproc: int, argv: list[str]) -> None:
    """Re-run `python -m mimetic <argv>` under torchrun with `nproc` processes (one per GPU). A stop
    request (SIGTERM, SIGUSR1) goes on to the workers, which stop at one step together (train.preempt)."""
    # --standalone: a local rendezvous on a free port, so concurrent runs never collide.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "mimetic", *argv]
    stop = preempt.StopRequest()
    with subprocess.Popen(cmd, preexec_fn=_torchrun_child) as proc:
        preempt.forward_to_children(stop, proc.pid)
        status = proc.wait()
    if stop.signum is not None:
        raise preempt.Preempted(f"stopped by {stop.name}: the workers wrote their checkpoint (their lines are "
                                f"above); the same command resumes the run (exit status {preempt.EXIT_CODE}: retry)")
    if status:
        raise LaunchError(f"torchrun exited with status {status} (the workers' errors are above)")


def _torchrun_child() -> None:
    """torchrun's process (preexec_fn): it dies with its launcher, and ignores SIGUSR1, which it has no
    handler for and would die of (under SLURM every process of the job gets `--signal`'s), leaving
    its workers behind; the workers install their own handler."""
    die_with_parent()
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def die_with_parent() -> None:
    """In a child process (preexec_fn): SIGTERM when the parent dies, so no worker outlives its
    launcher (a killed run, a bench stopped by a timeout) and keeps its GPU."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def recipe_from_json(text: str, **overrides: Any) -> Recipe:
    """The recipe (TrainConfig, or LMConfig for a text corpus) from a JSON object of its fields,
    with `overrides` (None = not given) on top."""
    try:
        values = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--recipe is not valid JSON ({e})") from e
    if not isinstance(values, dict):
        raise ValueError(f"--recipe must be a JSON object of recipe keys, not {type(values).__name__}")
    missing = sorted(f for f in ("dataset", "model") if f not in values)
    if missing:
        raise ValueError(f"--recipe needs {missing}")
    cls = recipe_class(values["dataset"])
    fields = set(cls.__dataclass_fields__)
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"--recipe has unknown key(s) {unknown}; the keys of a {values['dataset']} run are "
                         f"{sorted(fields)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    foreign = sorted(set(given) - fields)
    if foreign:
        raise ValueError(f"--{foreign[0].replace('_', '-')} does not apply to a {values['dataset']} run")
    return cls(**{**values, **given}).validate()
