"""Training throughput (tokens/s) of the language-model run's step (mimetic.train.lm), and what a
step asks of a device (host copies and kernels, counted with the device faked as `meta`).

Not a test. Run from the repository root:
    PYTHONPATH=src python benchmarks/lm_throughput.py [--model gpt_char_tiny] [--batch 32] [--context 128]
        [--device cpu|cuda] [--threads 2] [--steps 20]

The step is train_lm's own (mimetic.train.lm.train_step): windows drawn from (seed, step) on
the tokens' device, forward under the recipe's autocast, cross-entropy, backward, clipping,
AdamW. Tokens/s = batch x context x
steps / seconds, after 3 warm-up steps; on CUDA the clock stops after a synchronize.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from mimetic.bench.flops import DeviceWork
from mimetic.train.gpt import GPTS, build_run_gpt
from mimetic.train.lm import autocast, build_optimizer, train_step
from mimetic.train.recipe import LMConfig


def step_fn(cfg: LMConfig, model: torch.nn.Module, tokens: torch.Tensor):
    optimizer, amp = build_optimizer(cfg, model), autocast(tokens.device, cfg.amp)
    return lambda i: train_step(cfg, model, optimizer, tokens, i, amp)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="gpt_char_tiny", choices=sorted(GPTS))
    p.add_argument("--vocab", type=int, default=65, help="65: Tiny Shakespeare's characters; 50257: GPT-2's BPE")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = LMConfig(dataset="text", model=a.model, batch_size=a.batch, context=a.context).validate()
    tokens = torch.from_numpy(np.random.default_rng(0).integers(0, a.vocab, 1_000_000))

    # What one step asks of a device, counted on `meta` (no value can be read back there).
    meta_model = build_run_gpt(a.model, a.vocab, 0, "mimetic", {}).to("meta")
    meta_step = step_fn(cfg, meta_model, tokens.to("meta"))
    meta_step(0)
    with DeviceWork() as work:
        meta_step(1)
    print(f"one step on a device: {work.copies} host copies, {work.kernels} kernels")

    dev = torch.device(a.device)
    model = build_run_gpt(a.model, a.vocab, 0, "mimetic", {}).to(dev)
    step = step_fn(cfg, model, tokens.to(dev))
    for i in range(3):
        step(i)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for i in range(3, 3 + a.steps):
        loss = step(i)
    float(loss)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{platform.processor() or 'cpu'}"
    params = sum(p.numel() for p in model.parameters())
    print(f"{a.model} ({params / 1e6:.2f}M parameters), batch {a.batch} x context {a.context}, {where}, "
          f"{torch.get_num_threads()} threads: {a.batch * a.context * a.steps / seconds:,.0f} tokens/s "
          f"({seconds / a.steps * 1000:.0f} ms/step)")


if __name__ == "__main__":
    main()
