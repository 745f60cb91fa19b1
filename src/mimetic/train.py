"""The training loop: one run = one (experiment, arm, seed) in one folder.

A run folder holds metrics.csv (a row per epoch), final.safetensors and summary.json,
written in that order, each atomically, so summary.json marks a finished run. A checkpoint
(kept elsewhere, outside the workflow's declared outputs) lets a killed run resume from its
last finished epoch with the same result it would have had uninterrupted.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch import Tensor, nn

from mimetic import io
from mimetic.data import ImageData, load_dataset
from mimetic.data.augment import RandAugment, mix, random_crop, random_flip
from mimetic.models import MODELS
from mimetic.provenance import environment
from mimetic.recipe import TrainConfig, build_model


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Dist:
    """This process's place in a data-parallel run (world 1 without torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of n items (the first n % world ranks get one more)."""
        per, extra = divmod(n, self.world)
        start = self.rank * per + min(self.rank, extra)
        return slice(start, start + per + (self.rank < extra))

    def sum(self, t: Tensor) -> Tensor:
        if self.world > 1:
            torch.distributed.all_reduce(t)
        return t


def setup_distributed(device: str) -> tuple[Dist, torch.device]:
    """Join the process group torchrun set up (if any) and pick this rank's device."""
    if device == "auto":
        device = "cuda" if torch.cuda.device_count() > 0 else "cpu"
    cuda = device.startswith("cuda")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), torch.device(device)
    local = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return Dist(torch.distributed.get_rank(), world), torch.device(f"cuda:{local}" if cuda else "cpu")


class Batches:
    """The training set on the device, served in shuffled, augmented, normalized batches:
    crop, flip, RandAugment on uint8, then normalisation, then mixup/cutmix. Targets are class
    indices, or soft targets (N, classes) under mixup/cutmix.

    Every rank draws the same global batch with the same generator and keeps its shard, so
    a data-parallel run sees exactly the inputs of a single-process run.
    """

    def __init__(self, data: ImageData, cfg: TrainConfig, device: torch.device, dist: Dist = Dist()):
        self.x, self.y = data.train_x.to(device), data.train_y.to(device)
        mean, std = data.stats()
        self.mean, self.std = mean.to(device)[:, None, None], std.to(device)[:, None, None]
        self.cfg, self.dist = cfg, dist
        self.flip = cfg.flip == "yes" or (cfg.flip == "auto" and data.flip)
        self.batch_size = min(cfg.batch_size, len(self.x))
        self.steps = len(self.x) // self.batch_size  # the last partial batch is dropped
        self.randaugment = RandAugment.parse(cfg.randaugment) if cfg.randaugment else None
        self.fill = (mean * 255).round()  # RandAugment's fill colour, as timm: the dataset mean
        self.num_classes = data.num_classes

    def normalize(self, x: Tensor) -> Tensor:
        return (x.float() / 255 - self.mean) / self.std

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """(x, y) of this rank's share of each global batch of `epoch`."""
        # One generator per (seed, epoch): resuming at an epoch needs no saved data RNG.
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self.x), generator=gen).to(self.x.device)
        for step in range(self.steps):
            idx = perm[step * self.batch_size : (step + 1) * self.batch_size]
            x = random_crop(self.x[idx], self.cfg.crop_padding, gen)
            if self.flip:
                x = random_flip(x, gen)
            if self.randaugment:
                x = self.randaugment(x, gen, self.fill)
            x, y = self.normalize(x), self.y[idx]
            if self.cfg.mixup > 0 or self.cfg.cutmix > 0:
                x, y = mix(x, y, self.num_classes, self.cfg.mixup, self.cfg.cutmix, gen)
            mine = self.dist.shard(len(idx))
            yield x[mine], y[mine]


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, normalize: Callable[[Tensor], Tensor], batch_size: int,
             amp: bool, dist: Dist = Dist()) -> tuple[float, float]:
    """Mean loss and accuracy (%) over (x, y); in a data-parallel run each rank takes a shard."""
    model.eval()
    mine = dist.shard(len(x))
    x, y = x[mine], y[mine]
    loss, correct = torch.zeros((), device=x.device), torch.zeros((), device=x.device)
    for i in range(0, len(x), batch_size):
        xb, yb = normalize(x[i : i + batch_size]), y[i : i + batch_size]
        with _autocast(x.device, amp):
            logits = model(xb)
        loss += F.cross_entropy(logits.float(), yb, reduction="sum")
        correct += (logits.argmax(-1) == yb).sum()
    totals = dist.sum(torch.stack([loss, correct.float(), torch.tensor(float(len(x)), device=x.device)]))
    return (totals[0] / totals[2]).item(), (100 * totals[1] / totals[2]).item()


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


def _rng_state(device: torch.device) -> dict[str, Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if k not in TrainConfig.EXECUTION and a.get(k) != b.get(k))


def _train_epoch(model: nn.Module, batches: Batches, epoch: int, optimizer: torch.optim.Optimizer,
                 scheduler: CosineLRScheduler, cfg: TrainConfig) -> tuple[Tensor, Tensor, Tensor]:
    """One epoch of updates. Returns this rank's per-step losses, loss sum and correct count.

    Losses stay on the device (no host sync per step); the caller checks them once per epoch.
    """
    dev = batches.x.device
    losses = torch.zeros(batches.steps, device=dev)
    loss_sum, correct = torch.zeros((), device=dev), torch.zeros((), device=dev)
    model.train()
    for step, (x, y) in enumerate(batches.epoch(epoch)):
        optimizer.zero_grad(set_to_none=True)
        for i, (xm, ym) in enumerate(zip(x.chunk(cfg.accum_steps), y.chunk(cfg.accum_steps))):
            # DDP all-reduces gradients on the last micro-batch only.
            sync = i == cfg.accum_steps - 1 or not isinstance(model, nn.parallel.DistributedDataParallel)
            with (contextlib.nullcontext() if sync else model.no_sync()), _autocast(dev, cfg.amp):
                logits = model(xm)
            # Soft targets (mixup/cutmix) work as they are; label smoothing applies to both.
            loss = F.cross_entropy(logits.float(), ym, label_smoothing=cfg.label_smoothing)
            (loss * len(ym) / len(y)).backward()
            losses[step] += loss.detach() * len(ym) / len(y)
            loss_sum += loss.detach() * len(ym)
            correct += (logits.argmax(-1) == (ym.argmax(-1) if ym.ndim == 2 else ym)).sum()
        if cfg.clip_grad > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        optimizer.step()
        scheduler.step_update(num_updates=epoch * batches.steps + step + 1)
    return losses, loss_sum, correct


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


def train(cfg: TrainConfig, out_dir: str | Path, *, experiment: str | None = None, arm: str | None = None,
          checkpoint: str | Path | None = None, device: str = "auto",
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train one run into `out_dir`; returns its summary.

    experiment, arm: the run's labels in the workflow's config (default: the dataset and the
    init), recorded in summary.json so that analysis never reads them back from folder names.
    checkpoint: written every cfg.checkpoint_every epochs and read back on start, so a killed
    run resumes; removed once the run's outputs are complete. Under torchrun, every rank
    trains its shard of each batch and rank 0 writes.
    """
    cfg.validate()
    dist, dev = setup_distributed(device)
    if cfg.batch_size % (dist.world * cfg.accum_steps):
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by processes x accum_steps "
                         f"= {dist.world} x {cfg.accum_steps}")
    log = log if dist.main else (lambda s: None)
    out_dir = Path(out_dir)
    ckpt = Path(checkpoint) if checkpoint else None
    if dist.main:
        _remove_stale_temporaries(out_dir, ckpt)
    data = load_dataset(cfg.dataset, cfg.data_root)
    if MODELS[cfg.model]["img_size"] != data.image_size:
        raise ValueError(f"model={cfg.model!r} takes {MODELS[cfg.model]['img_size']}px images but "
                         f"dataset={cfg.dataset!r} has {data.image_size}px; pick a matching model")
    # the plain module: weights, checkpoints, evaluation
    net = build_model(cfg, num_classes=data.num_classes, in_chans=data.channels).to(dev)
    model = net
    if dist.world > 1:
        model = nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    if cfg.compile and dev.type == "cuda":
        model = torch.compile(model)
    batches = Batches(data, cfg, dev, dist)
    test_x, test_y = data.test_x.to(dev), data.test_y.to(dev)

    # fused AdamW: one kernel for the whole update on CUDA (the CPU keeps the reference path).
    optimizer = create_optimizer_v2(net, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.opt_eps,
                                    **({"fused": True} if dev.type == "cuda" else {}))
    steps = batches.steps
    scheduler = CosineLRScheduler(optimizer, t_initial=cfg.epochs * steps, lr_min=cfg.min_lr,
                                  warmup_t=cfg.warmup_epochs * steps, warmup_lr_init=cfg.min_lr,
                                  warmup_prefix=True, t_in_epochs=False)

    rows: list[dict[str, Any]] = []
    start_epoch, elapsed = 0, 0.0
    if ckpt and ckpt.exists():
        state = torch.load(ckpt, map_location=dev, weights_only=False)
        diff = _config_diff(state["config"], cfg.to_dict())
        if diff:
            log(f"checkpoint {ckpt} belongs to another config (differs in {diff}); starting from scratch")
        else:
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            _set_rng_state(state["rng"], dev)
            rows, start_epoch, elapsed = state["rows"], state["epoch"] + 1, state["elapsed"]
            log(f"resumed from {ckpt} after epoch {state['epoch'] + 1}")

    seen = steps * batches.batch_size  # images per epoch, all ranks together
    session_start = time.perf_counter()  # this process only: a resumed run's ETA uses its own pace
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        losses, loss_sum, correct = _train_epoch(model, batches, epoch, optimizer, scheduler, cfg)
        _check_finite(losses, epoch, dist)
        totals = dist.sum(torch.stack([loss_sum, correct.float()]))
        train_loss, train_acc = totals[0].item() / seen, 100 * totals[1].item() / seen
        train_time = time.perf_counter() - t0
        test_loss, test_acc = evaluate(net, test_x, test_y, batches.normalize, cfg.eval_batch_size, cfg.amp, dist)
        elapsed += time.perf_counter() - t0
        rows.append({"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                     "test_loss": test_loss, "test_acc": test_acc, "images_per_s": seen / train_time,
                     "wall_time": elapsed})
        pace = (time.perf_counter() - session_start) / (epoch + 1 - start_epoch)
        log(f"epoch {epoch + 1}/{cfg.epochs} lr {lr:.2e} train loss {train_loss:.4f} acc {train_acc:.2f} | "
            f"test loss {test_loss:.4f} acc {test_acc:.2f} | {seen / train_time:.0f} img/s | "
            f"elapsed {_clock(elapsed)} eta {_clock(pace * (cfg.epochs - epoch - 1))}")
        last = epoch + 1 == cfg.epochs
        if ckpt and dist.main and ((epoch + 1) % cfg.checkpoint_every == 0 or last):
            io.torch_save(ckpt, {"config": cfg.to_dict(), "epoch": epoch, "model": net.state_dict(),
                                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                 "rng": _rng_state(dev), "rows": rows, "elapsed": elapsed})

    metrics = pd.DataFrame(rows)
    best = metrics.loc[metrics["test_acc"].idxmax()]
    summary = {
        "final_test_acc": float(metrics["test_acc"].iloc[-1]), "best_test_acc": float(best["test_acc"]),
        "best_epoch": int(best["epoch"]), "final_test_loss": float(metrics["test_loss"].iloc[-1]),
        "epochs": cfg.epochs, "wall_time": elapsed,
        # The run's identity: what aggregation groups and pairs by.
        "experiment": experiment or cfg.dataset, "arm": arm or cfg.init, "seed": cfg.seed, "init": cfg.init,
        "init_params": cfg.init_params, "config": cfg.to_dict(), "device": _device_name(dev), "device_type": dev.type,
        "processes": dist.world, "parameters": sum(p.numel() for p in net.parameters()),
        "environment": environment(),
    }
    if dist.main:
        io.write_csv(out_dir / "metrics.csv", metrics)
        io.write_safetensors(out_dir / "final.safetensors", net.state_dict(),
                             metadata={"model": cfg.model, "init": cfg.init, "seed": str(cfg.seed)})
        io.write_json(out_dir / "summary.json", summary)
        if ckpt:
            ckpt.unlink(missing_ok=True)
    if dist.world > 1:
        torch.distributed.barrier()
    return summary
