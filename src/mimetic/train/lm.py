"""The language-model run: a GPT (mimetic.train.gpt) trained from scratch on one text, nanoGPT's
train.py in shape: set-up, resume, the iteration loop with its evaluations, the outputs.

A run folder holds metrics.csv (a row per evaluation), init.json, final.safetensors and
summary.json, written in that order, each atomically. A checkpoint (outside the run folder)
every `checkpoint_every` iterations holds the model, the optimizer, the rows so far and the RNG
that dropout draws from; a step's windows come from (seed, step) alone, so a resumed run
computes what the uninterrupted one would have.

Loss is in nats per token: the validation loss is the mean over the whole validation split in
non-overlapping windows of `context` tokens; bits per token (per character for "char", per
byte for "byte") are loss / ln 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimetic import io
from mimetic.data.text import TextData, check_context, eval_windows, load_tokens, text_stage_files, train_windows
from mimetic.train._amp import autocast
from mimetic.train.checkpoint import read, write
from mimetic.train.preempt import StopRequest, on_signals, stopped
from mimetic.train.recipe import LMConfig, differences


def learning_rate(cfg: LMConfig, it: int) -> float:
    """nanoGPT's schedule: linear warm-up over warmup_iters, then cosine from lr to min_lr at the last iteration."""
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)
    ratio = (it - cfg.warmup_iters) / max(1, cfg.iterations - 1 - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)


def build_optimizer(cfg: LMConfig, model: nn.Module) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, cfg.beta2))


@torch.no_grad()
def evaluate(model: nn.Module, tokens: Tensor, context: int, batch_size: int,
             amp: contextlib.AbstractContextManager | None = None) -> float:
    """Mean loss (nats per token) over `tokens` in non-overlapping windows of `context`, summed
    where the tokens are and read back once."""
    model.eval()
    x, y = eval_windows(tokens, context)
    total = torch.zeros((), dtype=torch.float64, device=tokens.device)
    for i in range(0, len(x), batch_size):
        with amp or contextlib.nullcontext():
            logits = model(x[i:i + batch_size]).logits
        total += F.cross_entropy(logits.flatten(0, 1).float(), y[i:i + batch_size].flatten(), reduction="sum").double()
    model.train()
    return float(total / y.numel())


@dataclass
class _Progress:
    step: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    loss_sum: float = 0.0  # the training losses since the last evaluation, and their count
    loss_count: int = 0
    interval: float = 0.0  # training seconds since the last evaluation
    elapsed: float = 0.0  # training and evaluation seconds in all


def train_step(cfg: LMConfig, model: nn.Module, optimizer: torch.optim.Optimizer, tokens: Tensor, step: int,
               amp: contextlib.AbstractContextManager) -> Tensor:
    """One optimizer step on step `step`'s windows of `tokens`; returns the loss, on the device."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(cfg, step)
    x, y = train_windows(tokens, cfg.context, cfg.batch_size, cfg.seed, step)
    with amp:
        logits = model(x).logits
    loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    return loss.detach()


def prepared_files(cfg: LMConfig) -> tuple[Path, Path]:
    """The data stage's tokens and meta files the run reads: in `data_root`, or resources/data/<dataset>."""
    files = text_stage_files(cfg.dataset, cfg.tokenizer)
    if cfg.data_root is None:
        return Path(files["tokens"]), Path(files["meta"])
    return Path(cfg.data_root) / Path(files["tokens"]).name, Path(cfg.data_root) / Path(files["meta"]).name


def train_lm(cfg: LMConfig, out_dir: str | Path, *, data: TextData | None = None, experiment: str | None = None,
             arm: str | None = None, checkpoint: str | Path | None = None, device: str = "cpu",
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train one language-model run into `out_dir`; returns its summary. `data`: the corpus' tokens
    (default: the data stage's files, prepared_files)."""
    cfg.validate()
    out_dir, checkpoint, dev = Path(out_dir), Path(checkpoint) if checkpoint else None, torch.device(device)
    with on_signals() as stop:  # SIGTERM/SIGUSR1: the step in progress, the checkpoint, out (train.preempt)
        data = data if data is not None else load_tokens(*prepared_files(cfg))
        check_context(data, cfg.context)
        model, record = _model(cfg, data)
        model.to(dev)
        optimizer = build_optimizer(cfg, model)
        progress = _resume(checkpoint, cfg, model, optimizer, dev, log)
        _steps(cfg, model, optimizer, data, progress, dev, checkpoint, stop, log)
    summary = _summary(cfg, data, model, progress, experiment, arm, dev)
    io.write_csv(out_dir / "metrics.csv", pd.DataFrame(progress.rows))
    io.write_json(out_dir / "init.json", record)
    # GPT-2 ties lm_head to the token embedding: stored once, as transformer.wte.weight
    state = {k: v.cpu() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    io.write_safetensors(out_dir / "final.safetensors", state, metadata={"model": cfg.model, "init": cfg.init,
                                                                          "seed": str(cfg.seed)})
    io.write_json(out_dir / "summary.json", summary)
    if checkpoint:
        checkpoint.unlink(missing_ok=True)
    return summary


def _steps(cfg: LMConfig, model: nn.Module, optimizer: torch.optim.Optimizer, data: TextData, progress: _Progress,
           dev: torch.device, checkpoint: Path | None, stop: StopRequest, log: Callable[[str], None]) -> None:
    """The iterations from progress.step on, with their evaluations and checkpoints."""
    # The tokens live on the device and a step's windows are gathered there: only the offsets cross.
    train, val = torch.from_numpy(data.train).to(dev), torch.from_numpy(data.val).to(dev)
    amp = autocast(dev, cfg.amp)
    t0 = time.perf_counter()
    # Summed where the model is: reading a loss back every step would wait on the device each time.
    loss_sum = torch.tensor(progress.loss_sum, dtype=torch.float64, device=dev)
    model.train()
    for step in range(progress.step, cfg.iterations):
        loss_sum += train_step(cfg, model, optimizer, train, step, amp)
        progress.step, progress.loss_count = step + 1, progress.loss_count + 1
        if progress.step % cfg.eval_every == 0 or progress.step == cfg.iterations:
            progress.loss_sum = loss_sum.item()
            progress.interval += time.perf_counter() - t0
            val_loss = evaluate(model, val, cfg.context, cfg.eval_batch_size, amp)
            progress.elapsed += time.perf_counter() - t0
            progress.rows.append(_row(cfg, progress, val_loss))
            progress.loss_sum, progress.loss_count, progress.interval, t0 = 0.0, 0, 0.0, time.perf_counter()
            loss_sum.zero_()
            log(_line(cfg, progress.rows[-1]))
        halt = stop.after_step() and progress.step < cfg.iterations
        if checkpoint and (halt or progress.step % cfg.checkpoint_every == 0) and progress.step < cfg.iterations:
            progress.loss_sum = loss_sum.item()
            now = time.perf_counter()
            progress.interval, progress.elapsed, t0 = progress.interval + now - t0, progress.elapsed + now - t0, now
            _save(checkpoint, cfg, model, optimizer, progress)
        if halt:
            raise stopped(stop, f"at step {progress.step} of {cfg.iterations}", checkpoint)


def _model(cfg: LMConfig, data: TextData) -> tuple[nn.Module, dict[str, Any]]:
    """The run's GPT (transformers' own init seeded by cfg.seed, then its attention init) and
    its init.json: per tensor part, whether it differs from the model's own init, and the
    attention layers' statistics at initialization."""
    from mimetic.attention import INITS, changed_parts, layer_statistics
    from mimetic.train.gpt import build_run_gpt

    own = build_run_gpt(cfg.model, data.vocab_size, cfg.seed, "default", {})
    model = build_run_gpt(cfg.model, data.vocab_size, cfg.seed, cfg.init, cfg.init_params)
    record = {"init": cfg.init, "init_params": cfg.init_params, "touches": list(INITS[cfg.init].touches),
              "changed": changed_parts(model, own), "layers": layer_statistics(model)}
    torch.manual_seed(cfg.seed + 1)  # dropout's stream: the same for every init
    return model, record


def _row(cfg: LMConfig, progress: _Progress, val_loss: float) -> dict[str, Any]:
    tokens = progress.loss_count * cfg.batch_size * cfg.context
    return {"step": progress.step, "lr": learning_rate(cfg, progress.step - 1),
            "train_loss": progress.loss_sum / progress.loss_count, "val_loss": val_loss,
            "val_ppl": math.exp(val_loss), "val_bits": val_loss / math.log(2),
            "tokens_per_s": tokens / max(progress.interval, 1e-9), "train_seconds": progress.interval,
            "wall_time": progress.elapsed}


def _line(cfg: LMConfig, row: dict[str, Any]) -> str:
    unit = "char" if cfg.tokenizer == "char" else "byte"
    return (f"step {row['step']}/{cfg.iterations} lr {row['lr']:.2e} train loss {row['train_loss']:.4f} | val loss "
            f"{row['val_loss']:.4f} ({row['val_bits']:.3f} bits/{unit}) | {row['tokens_per_s']:.0f} tokens/s")


def _save(path: Path, cfg: LMConfig, model: nn.Module, optimizer: torch.optim.Optimizer, progress: _Progress) -> None:
    # Tensors and plain values only: the checkpoint loads with weights_only=True.
    state = {"config": cfg.computed(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "progress": dataclasses.asdict(progress), "rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state() if next(model.parameters()).is_cuda else None}
    write(path, state)


def _resume(path: Path | None, cfg: LMConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
            device: torch.device, log: Callable[[str], None]) -> _Progress:
    state = read(path, device, log)
    if state is None:
        return _Progress()
    diff = differences(state["config"], cfg)
    if diff:
        log(f"checkpoint {path} is of another recipe (differs in {diff}): not resumed, trained from the start")
        return _Progress()
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"].cpu())
    if state["cuda_rng"] is not None and device.type == "cuda":  # dropout on the GPU draws from CUDA's generator
        torch.cuda.set_rng_state(state["cuda_rng"].cpu())
    progress = _Progress(**state["progress"])
    log(f"resumed from {path} at step {progress.step}")
    return progress


def _summary(cfg: LMConfig, data: TextData, model: nn.Module, progress: _Progress, experiment: str | None,
             arm: str | None, device: torch.device) -> dict[str, Any]:
    from mimetic.data import data_fingerprint
    from mimetic.data.text import unigram_entropy
    from mimetic.provenance import device_name, environment

    last, best = progress.rows[-1], min(progress.rows, key=lambda r: r["val_loss"])
    seconds = sum(r["train_seconds"] for r in progress.rows)
    return {"kind": "lm", "final_val_loss": last["val_loss"], "best_val_loss": best["val_loss"],
            "best_step": best["step"], "final_val_ppl": last["val_ppl"], "final_val_bits": last["val_bits"],
            "tokens_per_s": cfg.iterations * cfg.batch_size * cfg.context / max(seconds, 1e-9),
            "device": device_name(device), "device_type": device.type, "processes": 1,
            "data_fingerprint": data_fingerprint(cfg.data_meta()),
            "unigram_entropy": unigram_entropy(data.val, data.vocab_size), "vocab_size": data.vocab_size,
            "train_tokens": len(data.train), "val_tokens": len(data.val), "iterations": cfg.iterations,
            "wall_time": progress.elapsed, "experiment": experiment or cfg.dataset, "arm": arm or cfg.init,
            "seed": cfg.seed, "init": cfg.init, "init_params": cfg.init_params, "config": cfg.to_dict(),
            "parameters": sum(p.numel() for p in model.parameters()), "environment": environment()}
