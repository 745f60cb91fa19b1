"""A run's checkpoint: the one owner of what is saved, how an old checkpoint is read, and what
makes a checkpoint another config's.

It holds where training stands, (epoch, step) both counted from 0, the finished epochs' metric
rows, the unfinished epoch's running totals (mid-epoch checkpoints), and the model, optimizer,
scheduler and RNG states. It lives outside the workflow's declared outputs, so a rerun resumes.
Tensors and plain values only: it loads with `weights_only=True`, so a planted file runs no code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mimetic import io
from mimetic.train.distributed import Dist
from mimetic.train.recipe import TrainConfig, differences


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


def digest(obj: Any) -> str:
    """A checksum of a checkpoint's contents (its tensors' bytes and its plain values, in order):
    the zip file torch writes is read back without checking, so a flipped byte would load."""
    h = hashlib.sha256()

    def walk(x: Any) -> None:
        if isinstance(x, Tensor):
            h.update(f"{x.dtype}{tuple(x.shape)}".encode())
            h.update(x.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
        elif isinstance(x, dict):
            for k in sorted(x, key=repr):
                h.update(repr(k).encode())
                walk(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(f"[{len(x)}".encode())
            for v in x:
                walk(v)
        else:
            h.update(repr(x).encode())  # floats' repr round-trips exactly

    walk(obj)
    return h.hexdigest()


def write(path: Path, state: dict[str, Any]) -> None:
    """`state` (tensors and plain values) to `path`, atomically, with its checksum."""
    io.torch_save(path, {**state, "sha256": digest(state)})


def read(path: Path | None, device: torch.device, log: Callable[[str], None]) -> dict[str, Any] | None:
    """The checkpoint at `path` (any run's: ViT or GPT), loaded with weights_only=True and its
    checksum verified; None where there is none. A damaged one (truncated, garbage, checksum wrong)
    is moved aside to <path>.damaged, said in the log, so the run and every retry start afresh
    instead of failing on it again; one that holds a pickled object is refused."""
    if path is None or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:  # another rank of this run moved it aside meanwhile
        return None
    except pickle.UnpicklingError as e:
        refused = io.refused_global(e)
        if refused is None:  # bytes that are no pickle at all
            return _set_aside(path, "not a readable checkpoint (UnpicklingError)", log)
        raise CheckpointError(f"checkpoint {path} is refused: it holds the pickled object {refused}, which "
                              "could run code when loaded, and mimetic's checkpoints hold only tensors and plain "
                              "values; delete it to train the run from the start") from None
    except Exception as e:  # noqa: BLE001 - any other failure to read it (a truncated zip, an EOF) is damage
        return _set_aside(path, f"{type(e).__name__}: {e}", log)
    if not isinstance(state, dict) or "config" not in state:
        return _set_aside(path, "it is not a mimetic checkpoint", log)
    stored = state.pop("sha256", None)
    if stored is None:
        log(f"checkpoint {path} has no checksum (an older mimetic wrote it): read unverified")
    elif stored != digest(state):
        return _set_aside(path, "its checksum does not match its contents", log)
    return state


def _set_aside(path: Path, why: str, log: Callable[[str], None]) -> None:
    aside = path.with_name(path.name + ".damaged")
    with contextlib.suppress(FileNotFoundError):  # data-parallel ranks: one of them moves it
        path.replace(aside)
    log(f"checkpoint {path} is damaged ({why.splitlines()[0]}): moved to {aside}; the run trains from the start")


def save(path: Path, cfg: TrainConfig, progress: Progress, net: nn.Module, optimizer: Any, scheduler: Any,
         device: torch.device) -> None:
    """The checkpoint to resume from at progress's (epoch, step), atomically."""
    write(path, {"config": cfg.to_dict(), "epoch": progress.epoch, "step": progress.step,
                 "partial": progress.totals, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "rng": _rng_state(device), "rows": progress.rows,
                 "elapsed": progress.elapsed})


def resume(path: Path | None, cfg: TrainConfig, net: nn.Module, optimizer: Any, scheduler: Any, device: torch.device,
           log: Any) -> Progress:
    """Load the checkpoint at `path` into the model, optimizer, scheduler and RNGs and return where
    training stands; a fresh Progress where there is none or it is another config's (said in the log)."""
    state = read(path, device, log)
    if state is None:
        return Progress()
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
