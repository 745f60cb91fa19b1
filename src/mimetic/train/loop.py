"""The training loop: one run = one (experiment, arm, seed) in one folder.

A run folder holds metrics.csv (a row per epoch), final.safetensors and summary.json,
written in that order, each atomically, so summary.json marks a finished run. A checkpoint
(kept elsewhere, outside the workflow's declared outputs) lets a killed run resume from its
last finished epoch, or step (cfg.checkpoint_steps, for ImageNet's long epochs; or the step at
which SIGTERM stopped it, mimetic.train.preempt), with the same result it would have had
uninterrupted.

The public pieces (build_optimizer, build_scheduler, train_step, evaluate) are what
`mimetic bench` times, so the benchmark measures the step a run takes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch import Tensor, nn

from mimetic import io
from mimetic.data import data_fingerprint
from mimetic.train import checkpoint as ckpt
from mimetic.train._amp import autocast
from mimetic.train.distributed import Dist, setup_distributed
from mimetic.train.inputs import make_inputs
from mimetic.provenance import device_name, environment
from mimetic.train.models import build_model, init_record
from mimetic.train.preempt import StopRequest, on_signals, stopped
from mimetic.train.recipe import TrainConfig


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], amp: bool, dist: Dist = Dist()
             ) -> tuple[float, float]:
    """Mean loss and accuracy (%) over this rank's normalized test batches, summed over ranks."""
    model.eval()
    totals, count = None, 0  # loss sum and correct on the device; the count is known here
    for xb, yb in batches:
        with autocast(xb.device, amp):
            logits = model(xb)
        batch = torch.stack([F.cross_entropy(logits.float(), yb, reduction="sum"),
                             (logits.argmax(-1) == yb).sum().float()])
        totals = batch if totals is None else totals + batch
        count += len(yb)
    device = next(model.parameters()).device
    totals = dist.sum(torch.cat([totals if totals is not None else torch.zeros(2, device=device),
                                 torch.full((1,), float(count), device=device)]))
    return (totals[0] / totals[2]).item(), (100 * totals[1] / totals[2]).item()


def build_optimizer(cfg: TrainConfig, net: nn.Module, device: torch.device, fused: bool | None = None
                    ) -> torch.optim.Optimizer:
    """timm's AdamW (no decay on norms, biases, embeddings). fused: one kernel for the whole
    update; default (None) on CUDA, while the CPU keeps the reference implementation."""
    fused = device.type == "cuda" if fused is None else fused
    return create_optimizer_v2(net, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.opt_eps,
                               **({"fused": True} if fused else {}))


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps: int) -> CosineLRScheduler:
    """Linear warm-up from min_lr, then cosine decay to min_lr, stepped per update (`steps` per epoch)."""
    return CosineLRScheduler(optimizer, t_initial=cfg.epochs * steps, lr_min=cfg.min_lr,
                             warmup_t=cfg.warmup_epochs * steps, warmup_lr_init=cfg.min_lr, warmup_prefix=True,
                             t_in_epochs=False)


def _ddp(model: nn.Module) -> nn.parallel.DistributedDataParallel | None:
    """The DDP module under `model`, also through torch.compile's wrapper (which is no DDP itself)."""
    model = getattr(model, "_orig_mod", model)
    return model if isinstance(model, nn.parallel.DistributedDataParallel) else None


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, cfg: TrainConfig
               ) -> tuple[Tensor, Tensor]:
    """One optimizer update on this rank's share (x, y) of a global batch, in cfg.accum_steps
    micro-batches. Returns the mean loss and the correct count, on the device (no host sync)."""
    optimizer.zero_grad(set_to_none=True)
    ddp = _ddp(model)
    loss_sum = correct = None
    for i, (xm, ym) in enumerate(zip(x.chunk(cfg.accum_steps), y.chunk(cfg.accum_steps))):
        # DDP all-reduces gradients on the last micro-batch only.
        sync = ddp is None or i == cfg.accum_steps - 1
        with (contextlib.nullcontext() if sync else ddp.no_sync()), autocast(x.device, cfg.amp):
            logits = model(xm)
        # Soft targets (mixup/cutmix) work as they are; label smoothing applies to both.
        loss = F.cross_entropy(logits.float(), ym, label_smoothing=cfg.label_smoothing)
        (loss * len(ym) / len(y)).backward()
        part_loss = loss.detach() * len(ym)
        part_correct = (logits.argmax(-1) == (ym.argmax(-1) if ym.ndim == 2 else ym)).sum()
        loss_sum = part_loss if loss_sum is None else loss_sum + part_loss
        correct = part_correct if correct is None else correct + part_correct
    if cfg.clip_grad > 0:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
    optimizer.step()
    return loss_sum / len(y), correct


def _check_finite(losses: Tensor, epoch: int, dist: Dist) -> None:
    bad = dist.sum((~torch.isfinite(losses)).float())
    if bad.any():
        step = int(bad.nonzero()[0])
        raise FloatingPointError(f"non-finite training loss at epoch {epoch + 1} step {step + 1} (both counted "
                                 "from 1); the run stops and writes no outputs")


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}"


def _remove_stale_temporaries(out_dir: Path, checkpoint: Path | None) -> None:
    """Temporary files of an atomic write that a kill interrupted (mimetic.io): never complete,
    never anyone's output, so a restarted run removes them instead of leaving them behind."""
    stale = list(out_dir.glob(".*.tmp"))
    if checkpoint is not None:
        stale += checkpoint.parent.glob(f".{checkpoint.name}.*.tmp")
    for path in stale:
        path.unlink(missing_ok=True)


@dataclasses.dataclass
class Run:
    """One run's pieces, as set up: its recipe, place, inputs, model (`net` the plain module for
    weights, checkpoints and evaluation; `model` what trains: DDP and compile wrap it), optimizer,
    scheduler, checkpoint file and whether it was asked to stop."""

    cfg: TrainConfig
    dist: Dist
    device: torch.device
    inputs: Any
    net: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: CosineLRScheduler
    checkpoint: Path | None
    init_record: dict[str, Any]  # init.json: taken at set-up, from the model as initialized
    stop: StopRequest

    def save(self, progress: ckpt.Progress) -> None:
        if self.checkpoint and self.dist.main:
            ckpt.save(self.checkpoint, self.cfg, progress, self.net, self.optimizer, self.scheduler, self.device)

    def save_and_stop(self, progress: ckpt.Progress, where: str) -> None:
        """Pre-empted: the checkpoint at `progress`, then out (no rank leaves before it is written)."""
        self.save(progress)
        self.dist.barrier()
        raise stopped(self.stop, where, self.checkpoint)


def train(cfg: TrainConfig, out_dir: str | Path, *, experiment: str | None = None, arm: str | None = None,
          checkpoint: str | Path | None = None, device: str = "auto",
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train one run into `out_dir`; returns its summary.

    experiment, arm: the run's labels in the workflow's config (default: the dataset and the
    init), recorded in summary.json so that analysis never reads them back from folder names.
    checkpoint: written every cfg.checkpoint_every epochs (and cfg.checkpoint_steps steps) and read
    back on start, so a killed run resumes; removed once the run's outputs are complete. Under
    torchrun, every rank trains its shard of each batch and rank 0 writes. SIGTERM or SIGUSR1
    stops the run after the step in progress, its checkpoint written (mimetic.train.preempt).
    """
    cfg.validate()
    dist, dev = setup_distributed(device)
    try:
        with on_signals(dist) as stop:
            log = log if dist.main else (lambda s: None)
            run = _set_up(cfg, dist, dev, Path(out_dir), Path(checkpoint) if checkpoint else None, stop)
            progress = ckpt.resume(run.checkpoint, cfg, run.net, run.optimizer, run.scheduler, dev, log)
            pace, (start, start_step) = _Pace(cfg.epochs), (progress.epoch, progress.step)
            for epoch in range(start, cfg.epochs):
                first = start_step if epoch == start else 0
                progress.rows.append(_epoch(run, progress, epoch, first))
                log(pace.line(progress.rows[-1], first / run.inputs.steps))
                halt = stop.now() and epoch + 1 < cfg.epochs  # the last epoch's outputs take no longer
                if halt or (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
                    progress.epoch, progress.step, progress.totals = epoch + 1, 0, {}
                    if halt:
                        run.save_and_stop(progress, f"after epoch {epoch + 1}")
                    run.save(progress)
            summary = _summary(run, progress, experiment, arm)
            if dist.main:
                _write_outputs(run, Path(out_dir), progress, summary)
            dist.barrier()  # no rank leaves before rank 0 has written the outputs
            return summary
    finally:
        dist.close()


def _set_up(cfg: TrainConfig, dist: Dist, dev: torch.device, out_dir: Path, checkpoint: Path | None,
            stop: StopRequest) -> Run:
    if cfg.batch_size % (dist.world * cfg.accum_steps):
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by processes x accum_steps "
                         f"= {dist.world} x {cfg.accum_steps}")
    if dist.main:
        _remove_stale_temporaries(out_dir, checkpoint)
    inputs = make_inputs(cfg, dev, dist)
    net = build_model(cfg, num_classes=inputs.num_classes, in_chans=inputs.channels)
    record = init_record(cfg, net, num_classes=inputs.num_classes, in_chans=inputs.channels) if dist.main else {}
    net = net.to(dev)
    model = net
    if dist.world > 1:
        model = nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    if cfg.compile and dev.type == "cuda":
        model = torch.compile(model)
    optimizer = build_optimizer(cfg, net, dev)
    return Run(cfg, dist, dev, inputs, net, model, optimizer, build_scheduler(cfg, optimizer, inputs.steps),
               checkpoint, record, stop)


def _epoch(run: Run, progress: ckpt.Progress, epoch: int, first: int) -> dict[str, Any]:
    """Train epoch `epoch` from step `first` (its totals from the checkpoint), then evaluate;
    returns its metrics row. Mid-epoch checkpoints every cfg.checkpoint_steps steps, and where a
    stop is requested (but for the last step: the epoch's end comes first)."""
    cfg, inputs, steps = run.cfg, run.inputs, run.inputs.steps
    t0 = time.perf_counter()
    totals = ckpt.Totals.from_dict(progress.totals, run.device, run.dist) if first else ckpt.Totals.fresh(
        steps, run.optimizer.param_groups[0]["lr"], run.device)
    run.model.train()
    for step, (x, y) in enumerate(inputs.epoch(epoch, first), start=first):
        loss, right = train_step(run.model, run.optimizer, x, y, cfg)
        totals.losses[step], totals.loss_sum, totals.correct = loss, totals.loss_sum + loss * len(y), \
            totals.correct + right
        run.scheduler.step_update(num_updates=epoch * steps + step + 1)
        halt = run.stop.after_step() and step + 1 < steps  # every step, on every rank: the ranks vote
        if halt or cfg.checkpoint_steps and (step + 1) % cfg.checkpoint_steps == 0 and step + 1 < steps:
            now = time.perf_counter()
            progress.elapsed, totals.train_time, t0 = progress.elapsed + now - t0, totals.train_time + now - t0, now
            progress.epoch, progress.step, progress.totals = epoch, step + 1, totals.to_dict(run.dist)
            if halt:
                run.save_and_stop(progress, f"at epoch {epoch + 1} step {step + 1} of {steps}")
            run.save(progress)
    _check_finite(totals.losses, epoch, run.dist)
    seen = steps * inputs.batch_size  # images per epoch, all ranks together
    sums = run.dist.sum(torch.stack([totals.loss_sum, totals.correct.float()]))
    totals.train_time += time.perf_counter() - t0
    test_loss, test_acc = evaluate(run.net, inputs.test(), cfg.amp, run.dist)
    progress.elapsed += time.perf_counter() - t0
    return {"epoch": epoch + 1, "lr": totals.lr, "train_loss": sums[0].item() / seen,
            "train_acc": 100 * sums[1].item() / seen, "test_loss": test_loss, "test_acc": test_acc,
            "images_per_s": seen / totals.train_time, "wall_time": progress.elapsed}


class _Pace:
    """The log line of each epoch, with an ETA from this process's own pace."""

    def __init__(self, epochs: int):
        self.epochs, self.start, self.done = epochs, time.perf_counter(), 0.0

    def line(self, row: dict[str, Any], skipped: float) -> str:
        self.done += 1 - skipped  # a resumed epoch counts for the steps this process trained
        eta = (time.perf_counter() - self.start) / self.done * (self.epochs - row["epoch"])
        return (f"epoch {row['epoch']}/{self.epochs} lr {row['lr']:.2e} train loss {row['train_loss']:.4f} acc "
                f"{row['train_acc']:.2f} | test loss {row['test_loss']:.4f} acc {row['test_acc']:.2f} | "
                f"{row['images_per_s']:.0f} img/s | elapsed {_clock(row['wall_time'])} eta {_clock(eta)}")


def _summary(run: Run, progress: ckpt.Progress, experiment: str | None, arm: str | None) -> dict[str, Any]:
    cfg, rows = run.cfg, progress.rows
    best = max(rows, key=lambda r: r["test_acc"])  # the first of equal best, as idxmax
    return {
        "final_test_acc": float(rows[-1]["test_acc"]), "best_test_acc": float(best["test_acc"]),
        "best_epoch": int(best["epoch"]), "final_test_loss": float(rows[-1]["test_loss"]),
        "epochs": cfg.epochs, "wall_time": progress.elapsed,
        # The run's identity: what aggregation groups and pairs by.
        "experiment": experiment or cfg.dataset, "arm": arm or cfg.init, "seed": cfg.seed, "init": cfg.init,
        "init_params": cfg.init_params, "config": cfg.to_dict(), "device": device_name(run.device),
        "device_type": run.device.type, "processes": run.dist.world, "decode": getattr(run.inputs, "decode", None),
        "data_fingerprint": data_fingerprint(cfg.data_meta()),  # the data's identity (docs/training.md)
        "parameters": sum(p.numel() for p in run.net.parameters()), "environment": environment(),
    }


def _write_outputs(run: Run, out_dir: Path, progress: ckpt.Progress, summary: dict[str, Any]) -> None:
    """metrics.csv, init.json, final.safetensors, then summary.json (its presence marks a finished
    run); the checkpoint goes last."""
    cfg = run.cfg
    io.write_csv(out_dir / "metrics.csv", pd.DataFrame(progress.rows))
    io.write_json(out_dir / "init.json", run.init_record)
    io.write_safetensors(out_dir / "final.safetensors", run.net.state_dict(),
                         metadata={"model": cfg.model, "init": cfg.init, "seed": str(cfg.seed)})
    io.write_json(out_dir / "summary.json", summary)
    if run.checkpoint:
        run.checkpoint.unlink(missing_ok=True)
