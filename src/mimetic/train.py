"""The training loop: one run = one (experiment, arm, seed) in one folder.

A run folder holds metrics.csv (a row per epoch), final.safetensors and summary.json,
written in that order, each atomically, so summary.json marks a finished run. A checkpoint
(kept elsewhere, outside the workflow's declared outputs) lets a killed run resume from its
last finished epoch, or step (cfg.checkpoint_steps, for ImageNet's long epochs), with the same
result it would have had uninterrupted.

The public pieces (build_optimizer, build_scheduler, train_step, evaluate) are what
`mimetic bench` times, so the benchmark measures the step a run takes.
"""

from __future__ import annotations

import contextlib
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
from mimetic.distributed import Dist, setup_distributed
from mimetic.inputs import StreamInputs, make_inputs
from mimetic.provenance import device_name, environment
from mimetic.recipe import TrainConfig, build_model


def _autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA; elsewhere fp32 (the CPU's bf16 is slow; `meta` has no autocast)."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], amp: bool, dist: Dist = Dist()
             ) -> tuple[float, float]:
    """Mean loss and accuracy (%) over this rank's normalized test batches, summed over ranks."""
    model.eval()
    totals, count = None, 0  # loss sum and correct on the device; the count is known here
    for xb, yb in batches:
        with _autocast(xb.device, amp):
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
        with (contextlib.nullcontext() if sync else ddp.no_sync()), _autocast(x.device, cfg.amp):
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
    try:
        summary = _train(cfg, Path(out_dir), dist, dev, experiment=experiment, arm=arm, checkpoint=checkpoint, log=log)
        dist.barrier()  # no rank leaves before rank 0 has written the outputs
        return summary
    finally:
        dist.close()


def _train(cfg: TrainConfig, out_dir: Path, dist: Dist, dev: torch.device, *, experiment: str | None,
           arm: str | None, checkpoint: str | Path | None, log: Callable[[str], None]) -> dict[str, Any]:
    if cfg.batch_size % (dist.world * cfg.accum_steps):
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by processes x accum_steps "
                         f"= {dist.world} x {cfg.accum_steps}")
    log = log if dist.main else (lambda s: None)
    ckpt = Path(checkpoint) if checkpoint else None
    if dist.main:
        _remove_stale_temporaries(out_dir, ckpt)
    inputs = make_inputs(cfg, dev, dist)
    # the plain module: weights, checkpoints, evaluation
    net = build_model(cfg, num_classes=inputs.num_classes, in_chans=inputs.channels).to(dev)
    model = net
    if dist.world > 1:
        model = nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    if cfg.compile and dev.type == "cuda":
        model = torch.compile(model)
    optimizer = build_optimizer(cfg, net, dev)
    steps = inputs.steps
    scheduler = build_scheduler(cfg, optimizer, steps)

    # Where training stands: (epoch, step) to start from, the finished epochs' rows, and the
    # unfinished epoch's running totals (mid-epoch checkpoints, cfg.checkpoint_steps).
    rows: list[dict[str, Any]] = []
    start_epoch, start_step, elapsed = 0, 0, 0.0
    partial: dict[str, Any] = {}
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
            rows, elapsed = state["rows"], state["elapsed"]
            if "step" not in state:  # written before mid-epoch checkpoints: "epoch" was the last one finished
                state.update(epoch=state["epoch"] + 1, step=0, partial={})
            start_epoch, start_step, partial = state["epoch"], state["step"], state["partial"]
            where = f"after epoch {start_epoch}" if not start_step else f"at epoch {start_epoch + 1} step {start_step}"
            log(f"resumed from {ckpt} {where}")

    def save(epoch: int, step: int, partial: dict[str, Any]) -> None:
        """A checkpoint to resume from at (epoch, step), both counted from 0."""
        if ckpt and dist.main:
            io.torch_save(ckpt, {"config": cfg.to_dict(), "epoch": epoch, "step": step, "partial": partial,
                                 "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                 "scheduler": scheduler.state_dict(), "rng": _rng_state(dev), "rows": rows,
                                 "elapsed": elapsed})

    seen = steps * inputs.batch_size  # images per epoch, all ranks together
    session_start, session_epochs = time.perf_counter(), 0.0  # this process only: the ETA uses its own pace
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        first = start_step if epoch == start_epoch else 0
        if first:
            losses, loss_sum, correct = (partial[k].to(dev) for k in ("losses", "loss_sum", "correct"))
            lr, train_time = partial["lr"], partial["train_time"]
        else:
            losses = torch.zeros(steps, device=dev)
            loss_sum, correct = torch.zeros((), device=dev), torch.zeros((), device=dev)
            lr, train_time = optimizer.param_groups[0]["lr"], 0.0
        model.train()
        for step, (x, y) in enumerate(inputs.epoch(epoch, first), start=first):
            loss, right = train_step(model, optimizer, x, y, cfg)
            losses[step], loss_sum, correct = loss, loss_sum + loss * len(y), correct + right
            scheduler.step_update(num_updates=epoch * steps + step + 1)
            if cfg.checkpoint_steps and (step + 1) % cfg.checkpoint_steps == 0 and step + 1 < steps:
                now = time.perf_counter()
                elapsed, train_time, t0 = elapsed + now - t0, train_time + now - t0, now
                save(epoch, step + 1, {"losses": losses.cpu(), "loss_sum": loss_sum.cpu(), "correct": correct.cpu(),
                                       "lr": lr, "train_time": train_time})
        _check_finite(losses, epoch, dist)
        totals = dist.sum(torch.stack([loss_sum, correct.float()]))
        train_loss, train_acc = totals[0].item() / seen, 100 * totals[1].item() / seen
        train_time += time.perf_counter() - t0
        test_loss, test_acc = evaluate(net, inputs.test(), cfg.amp, dist)
        elapsed += time.perf_counter() - t0
        rows.append({"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                     "test_loss": test_loss, "test_acc": test_acc, "images_per_s": seen / train_time,
                     "wall_time": elapsed})
        session_epochs += 1 - first / steps
        pace = (time.perf_counter() - session_start) / session_epochs
        log(f"epoch {epoch + 1}/{cfg.epochs} lr {lr:.2e} train loss {train_loss:.4f} acc {train_acc:.2f} | "
            f"test loss {test_loss:.4f} acc {test_acc:.2f} | {seen / train_time:.0f} img/s | "
            f"elapsed {_clock(elapsed)} eta {_clock(pace * (cfg.epochs - epoch - 1))}")
        if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
            save(epoch + 1, 0, {})

    metrics = pd.DataFrame(rows)
    best = metrics.loc[metrics["test_acc"].idxmax()]
    summary = {
        "final_test_acc": float(metrics["test_acc"].iloc[-1]), "best_test_acc": float(best["test_acc"]),
        "best_epoch": int(best["epoch"]), "final_test_loss": float(metrics["test_loss"].iloc[-1]),
        "epochs": cfg.epochs, "wall_time": elapsed,
        # The run's identity: what aggregation groups and pairs by.
        "experiment": experiment or cfg.dataset, "arm": arm or cfg.init, "seed": cfg.seed, "init": cfg.init,
        "init_params": cfg.init_params, "config": cfg.to_dict(), "device": device_name(dev), "device_type": dev.type,
        "processes": dist.world, "decode": inputs.decode if isinstance(inputs, StreamInputs) else None,
        "parameters": sum(p.numel() for p in net.parameters()),
        "environment": environment(),
    }
    if dist.main:
        io.write_csv(out_dir / "metrics.csv", metrics)
        io.write_safetensors(out_dir / "final.safetensors", net.state_dict(),
                             metadata={"model": cfg.model, "init": cfg.init, "seed": str(cfg.seed)})
        io.write_json(out_dir / "summary.json", summary)
        if ckpt:
            ckpt.unlink(missing_ok=True)
    return summary
