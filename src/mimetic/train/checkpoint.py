"""A run's checkpoint: the one owner of what is saved, how an old checkpoint is read, and what
makes a checkpoint another config's.

It holds where training stands, (epoch, step) both counted from 0, the finished epochs' metric
rows, the unfinished epoch's running totals (mid-epoch checkpoints), and the model, optimizer,
scheduler and RNG states. It lives outside the workflow's declared outputs, so a rerun resumes.
Tensors and plain values only: it loads with `weights_only=True`, so a planted file runs no code.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mimetic import io
from mimetic.train.distributed import Dist
from mimetic.train.recipe import TrainConfig


@dataclasses.dataclass
class Totals:
    """An epoch's running totals, on the device: per-step losses, loss sum, correct count, and its
    learning rate and training seconds so far."""

    losses: Tensor
    loss_sum: Tensor
    correct: Tensor
    lr: float
    train_time: float = 0.0

    @classmethod
    def fresh(cls, steps: int, lr: float, device: torch.device) -> "Totals":
        return cls(torch.zeros(steps, device=device), torch.zeros((), device=device), torch.zeros((), device=device),
                   lr)

    def to_dict(self, dist: Dist = Dist()) -> dict[str, Any]:
        """For the checkpoint: the sums over all ranks, as rank 0 writes it for the whole batch."""
        losses, loss_sum, correct = (dist.sum(t.clone()).cpu() for t in (self.losses, self.loss_sum, self.correct))
        return {"losses": losses, "loss_sum": loss_sum, "correct": correct, "lr": self.lr,
                "train_time": self.train_time}

    @classmethod
    def from_dict(cls, d: dict[str, Any], device: torch.device, dist: Dist = Dist()) -> "Totals":
        """From the checkpoint: rank 0 resumes the sums of all ranks, the others add theirs from zero."""
        keep = 1 if dist.main else 0
        return cls(*(keep * d[k].to(device) for k in ("losses", "loss_sum", "correct")), d["lr"], d["train_time"])


@dataclasses.dataclass
class Progress:
    """Where training stands: resume at (epoch, step); `totals` is that epoch's when step > 0."""

    epoch: int = 0
    step: int = 0
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    elapsed: float = 0.0
    totals: dict[str, Any] = dataclasses.field(default_factory=dict)


def _rng_state(device: torch.device) -> dict[str, Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


class CheckpointError(ValueError):
    """A checkpoint file that is not loaded; the message names it and what to do."""


def read(path: Path, device: torch.device) -> dict[str, Any]:
    """The checkpoint at `path`, loaded with weights_only=True (any run's: ViT or GPT)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e), re.IGNORECASE)  # torch words it differently by version
        what = f"the pickled object {found.group(1)}" if found else "pickled Python objects"
        raise CheckpointError(f"checkpoint {path} is refused: it holds {what}, which could run code when loaded, "
                              "and mimetic's checkpoints hold only tensors and plain values; delete it to train "
                              "the run from the start") from None


def differences(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """The recipe keys in which a checkpoint's config differs from cfg (execution keys aside)."""
    now = cfg.to_dict()
    return sorted(k for k in saved.keys() | now.keys() if k not in TrainConfig.EXECUTION and saved.get(k) != now.get(k))


def save(path: Path, cfg: TrainConfig, progress: Progress, net: nn.Module, optimizer: Any, scheduler: Any,
         device: torch.device) -> None:
    """The checkpoint to resume from at progress's (epoch, step), atomically."""
    io.torch_save(path, {"config": cfg.to_dict(), "epoch": progress.epoch, "step": progress.step,
                         "partial": progress.totals, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "rng": _rng_state(device), "rows": progress.rows,
                         "elapsed": progress.elapsed})


def resume(path: Path | None, cfg: TrainConfig, net: nn.Module, optimizer: Any, scheduler: Any, device: torch.device,
           log: Any) -> Progress:
    """Load the checkpoint at `path` into the model, optimizer, scheduler and RNGs and return where
    training stands; a fresh Progress where there is none or it is another config's (said in the log)."""
    if path is None or not path.exists():
        return Progress()
    state = read(path, device)
    diff = differences(state["config"], cfg)
    if diff:
        log(f"checkpoint {path} belongs to another config (differs in {diff}); starting from scratch")
        return Progress()
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"], device)
    if "step" not in state:  # written before mid-epoch checkpoints: "epoch" was the last one finished
        state.update(epoch=state["epoch"] + 1, step=0, partial={})
    progress = Progress(state["epoch"], state["step"], state["rows"], state["elapsed"], state["partial"])
    where = (f"after epoch {progress.epoch}" if not progress.step
             else f"at epoch {progress.epoch + 1} step {progress.step}")
    log(f"resumed from {path} {where}")
    return progress
