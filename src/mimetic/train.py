"""The training loop: one run = one (dataset, model, arm, seed) in one folder.

A run folder holds metrics.csv (a row per epoch), final.safetensors and summary.json,
written in that order, each atomically, so summary.json marks a finished run. A checkpoint
(kept elsewhere, outside the workflow's declared outputs) lets a killed run resume from its
last finished epoch with the same result it would have had uninterrupted.
"""

from __future__ import annotations

import dataclasses
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch import Tensor, nn

from mimetic import io
from mimetic.data import DATASETS, ImageData, load_dataset
from mimetic.data.augment import RandAugment, mix, random_crop, random_flip
from mimetic.init import apply_init, check_params
from mimetic.models import MODELS, POOLS, POS_EMBEDS, create_model

FLIPS = ("auto", "yes", "no")


def _opt(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults: the CIFAR-10 recipe of paper-notes.md
    (AdamW, cosine with warm-up, clipping; ViT-Tiny, GAP, fixed sin-cos positions)."""

    dataset: str = _opt(None, f"dataset: {sorted(DATASETS)}", required=True)
    model: str = _opt(None, f"model: {sorted(MODELS)}", required=True)
    data_root: str | None = _opt(None, "folder with the prepared dataset (unused by built-in ones)")
    pool: str = _opt("avg", f"{POOLS}: global average pooling, or a class token")
    pos_embed: str = _opt("sincos", f"{POS_EMBEDS}: learned, or fixed 2-D sin-cos position embeddings")
    arm: str = _opt("default", "attention initialization (see `python -m mimetic arms`)")
    init_params: dict = _opt({}, "the arm's parameters, e.g. alpha1=0.7 (repeat the option)")
    seed: int = _opt(0, "seed for model init, attention init, data order and augmentation")
    epochs: int = _opt(200, "training epochs")
    batch_size: int = _opt(512, "training batch size")
    lr: float = _opt(1e-3, "peak learning rate")
    min_lr: float = _opt(1e-6, "final learning rate of the cosine schedule")
    warmup_epochs: int = _opt(10, "linear warm-up epochs")
    weight_decay: float = _opt(0.01, "AdamW weight decay (not applied to norms, biases, embeddings)")
    opt_eps: float = _opt(1e-3, "AdamW epsilon")
    clip_grad: float = _opt(3.0, "gradient norm clipping; 0 disables it")
    label_smoothing: float = _opt(0.0, "label smoothing")
    drop_path: float = _opt(0.0, "stochastic depth rate")
    crop_padding: int = _opt(0, "random crop after zero padding by this many pixels; 0 disables it")
    flip: str = _opt("auto", f"{FLIPS}: horizontal flips; auto = only where the dataset allows")
    randaugment: str = _opt("", "RandAugment in timm's syntax, e.g. rand-m9-mstd0.5-inc1 (on the device); "
                                "empty disables it")
    mixup: float = _opt(0.0, "mixup Beta(alpha, alpha) parameter; 0 disables it")
    cutmix: float = _opt(0.0, "cutmix Beta(alpha, alpha) parameter; 0 disables it (with mixup too: "
                              "one of the two per batch)")
    eval_batch_size: int = _opt(1024, "evaluation batch size")
    amp: bool = _opt(True, "bf16 autocast on CUDA (ignored on the CPU)")

    # Fields that do not change what a run computes: a checkpoint made under other
    # values of these is still this run's.
    EXECUTION = ("data_root", "eval_batch_size")

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first bad field; fill the arm's default parameters."""
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r}: unknown; choose one of {sorted(DATASETS)}")
        if self.model not in MODELS:
            raise ValueError(f"model={self.model!r}: unknown; choose one of {sorted(MODELS)}")
        for name, choices in (("pool", POOLS), ("pos_embed", POS_EMBEDS), ("flip", FLIPS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}={getattr(self, name)!r}: choose one of {choices}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        for name in ("min_lr", "weight_decay", "clip_grad", "crop_padding", "warmup_epochs", "seed", "mixup",
                     "cutmix"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 0")
        if not self.lr > 0 or not self.opt_eps > 0:
            raise ValueError(f"lr={self.lr}, opt_eps={self.opt_eps}: both must be > 0")
        for name in ("label_smoothing", "drop_path"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be in [0, 1)")
        if self.warmup_epochs >= self.epochs and self.epochs > 1:
            raise ValueError(f"warmup_epochs={self.warmup_epochs}: must be < epochs={self.epochs}")
        if self.randaugment:
            RandAugment.parse(self.randaugment)
        self.init_params = check_params(self.arm, self.init_params)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def environment() -> dict[str, Any]:
    """What produced a run: package versions, git commit, device."""
    import numpy
    import timm

    import mimetic

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": sys.version.split()[0], "torch": torch.__version__, "timm": timm.__version__,
        "numpy": numpy.__version__, "mimetic": mimetic.__version__, "git_commit": commit,
        "host": platform.node(),
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def build_model(cfg: TrainConfig, data: ImageData) -> nn.Module:
    """The run's model: timm's init seeded by cfg.seed, then the arm's attention init.

    The attention noise has its own generator, so every arm leaves the global RNG (and with
    it data order and dropout) in the same state.
    """
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, num_classes=data.num_classes, in_chans=data.channels, pool=cfg.pool,
                         pos_embed=cfg.pos_embed, drop_path=cfg.drop_path)
    if MODELS[cfg.model]["img_size"] != data.image_size:
        raise ValueError(f"model={cfg.model!r} takes {MODELS[cfg.model]['img_size']}px images but "
                         f"dataset={cfg.dataset!r} has {data.image_size}px; pick a matching model")
    return apply_init(model, cfg.arm, seed=cfg.seed, **cfg.init_params)


class Batches:
    """The training set on the device, served in shuffled, augmented, normalized batches:
    crop, flip, RandAugment on uint8, then normalisation, then mixup/cutmix. Targets are class
    indices, or soft targets (N, classes) under mixup/cutmix."""

    def __init__(self, data: ImageData, cfg: TrainConfig, device: torch.device):
        self.x, self.y = data.train_x.to(device), data.train_y.to(device)
        mean, std = data.stats()
        self.mean, self.std = mean.to(device)[:, None, None], std.to(device)[:, None, None]
        self.cfg = cfg
        self.flip = cfg.flip == "yes" or (cfg.flip == "auto" and data.flip)
        self.batch_size = min(cfg.batch_size, len(self.x))
        self.steps = len(self.x) // self.batch_size  # the last partial batch is dropped
        self.randaugment = RandAugment.parse(cfg.randaugment) if cfg.randaugment else None
        self.fill = (mean * 255).round()  # RandAugment's fill colour, as timm: the dataset mean
        self.num_classes = data.num_classes

    def normalize(self, x: Tensor) -> Tensor:
        return (x.float() / 255 - self.mean) / self.std

    def epoch(self, epoch: int):
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
            yield x, y


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, normalize: Callable[[Tensor], Tensor], batch_size: int,
             amp: bool) -> tuple[float, float]:
    """Mean loss and accuracy (%) over (x, y)."""
    model.eval()
    loss, correct = torch.zeros((), device=x.device), torch.zeros((), device=x.device)
    for i in range(0, len(x), batch_size):
        xb, yb = normalize(x[i : i + batch_size]), y[i : i + batch_size]
        with _autocast(x.device, amp):
            logits = model(xb)
        loss += F.cross_entropy(logits.float(), yb, reduction="sum")
        correct += (logits.argmax(-1) == yb).sum()
    return loss.item() / len(x), 100 * correct.item() / len(x)


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


def train(cfg: TrainConfig, out_dir: str | Path, *, checkpoint: str | Path | None = None,
          device: str = "auto", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train one run into `out_dir`; returns its summary.

    checkpoint: a file written after every epoch and read back on start, so a killed run
    resumes; removed once the run's outputs are complete.
    """
    cfg.validate()
    out_dir = Path(out_dir)
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    data = load_dataset(cfg.dataset, cfg.data_root)
    model = build_model(cfg, data).to(dev)
    batches = Batches(data, cfg, dev)
    test_x, test_y = data.test_x.to(dev), data.test_y.to(dev)

    optimizer = create_optimizer_v2(model, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.opt_eps)
    steps = batches.steps
    scheduler = CosineLRScheduler(optimizer, t_initial=cfg.epochs * steps, lr_min=cfg.min_lr,
                                  warmup_t=cfg.warmup_epochs * steps, warmup_lr_init=cfg.min_lr,
                                  warmup_prefix=True, t_in_epochs=False)

    rows: list[dict[str, Any]] = []
    start_epoch, elapsed = 0, 0.0
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt and ckpt.exists():
        state = torch.load(ckpt, map_location=dev, weights_only=False)
        diff = _config_diff(state["config"], cfg.to_dict())
        if diff:
            log(f"checkpoint {ckpt} belongs to another config (differs in {diff}); starting from scratch")
        else:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            _set_rng_state(state["rng"], dev)
            rows, start_epoch, elapsed = state["rows"], state["epoch"] + 1, state["elapsed"]
            log(f"resumed from {ckpt} after epoch {state['epoch']}")

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        loss_sum, correct = torch.zeros((), device=dev), torch.zeros((), device=dev)
        lr = optimizer.param_groups[0]["lr"]
        for step, (x, y) in enumerate(batches.epoch(epoch)):
            with _autocast(dev, cfg.amp):
                logits = model(x)
            # Soft targets (mixup/cutmix) work as they are; label smoothing applies to both.
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss ({loss.item()}) at epoch {epoch} step {step}; "
                                         "no outputs were written")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            optimizer.step()
            scheduler.step_update(num_updates=epoch * steps + step + 1)
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(-1) == (y if y.ndim == 1 else y.argmax(-1))).sum()
        seen = steps * batches.batch_size
        train_loss, train_acc = loss_sum.item() / seen, 100 * correct.item() / seen
        train_time = time.perf_counter() - t0
        test_loss, test_acc = evaluate(model, test_x, test_y, batches.normalize, cfg.eval_batch_size, cfg.amp)
        elapsed += time.perf_counter() - t0
        rows.append({"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                     "test_loss": test_loss, "test_acc": test_acc, "images_per_s": seen / train_time,
                     "wall_time": elapsed})
        log(f"epoch {epoch + 1}/{cfg.epochs} lr {lr:.2e} train loss {train_loss:.4f} acc {train_acc:.2f} | "
            f"test loss {test_loss:.4f} acc {test_acc:.2f} | {seen / train_time:.0f} img/s")
        if ckpt:
            io.torch_save(ckpt, {"config": cfg.to_dict(), "epoch": epoch, "model": model.state_dict(),
                                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                 "rng": _rng_state(dev), "rows": rows, "elapsed": elapsed})

    metrics = pd.DataFrame(rows)
    best = metrics.loc[metrics["test_acc"].idxmax()]
    summary = {
        "final_test_acc": float(metrics["test_acc"].iloc[-1]), "best_test_acc": float(best["test_acc"]),
        "best_epoch": int(best["epoch"]), "final_test_loss": float(metrics["test_loss"].iloc[-1]),
        "epochs": cfg.epochs, "wall_time": elapsed, "seed": cfg.seed, "arm": cfg.arm,
        "init_params": cfg.init_params, "config": cfg.to_dict(), "device": _device_name(dev),
        "parameters": sum(p.numel() for p in model.parameters()), "environment": environment(),
    }
    io.write_csv(out_dir / "metrics.csv", metrics)
    io.write_safetensors(out_dir / "final.safetensors", model.state_dict(),
                         metadata={"model": cfg.model, "arm": cfg.arm, "seed": str(cfg.seed)})
    io.write_json(out_dir / "summary.json", summary)
    if ckpt:
        ckpt.unlink(missing_ok=True)
    return summary
