"""Hand-made run records with known numbers, shared by the table and figure tests."""

from __future__ import annotations

import json
import math

import pandas as pd

from mimetic.report.claims import Accuracy, Claim, Reference

MIMETIC = {"alpha1": 0.7, "alpha2": 0.4, "beta1": 0.7, "beta2": 0.4, "dist": "normal"}
ARMS = {  # label -> (init, params)
    "default": ("default", {}),
    "mimetic": ("mimetic", MIMETIC),
    "mimetic-b0.35": ("mimetic", {**MIMETIC, "beta1": 0.35, "beta2": 0.2}),
    "mimetic-a0.35": ("mimetic", {**MIMETIC, "alpha1": 0.35, "alpha2": 0.2}),
    "mimetic-uniform": ("mimetic", {**MIMETIC, "dist": "uniform"}),
    "mimetic-qk": ("mimetic-qk", {"alpha1": 0.7, "beta1": 0.7, "dist": "normal"}),
}
# experiment -> arm -> final accuracy per seed (seeds 0, 1, ...)
FINAL = {
    "cifar10": {"default": [80.0, 81.0, 79.0, 82.0, 80.5], "mimetic": [85.0, 87.0, 84.0, 86.0, 86.5],
                "mimetic-b0.35": [82.0, 83.5, 80.0, 83.0, 82.0], "mimetic-a0.35": [84.0, 85.0, 83.5, 86.0, 85.0],
                "mimetic-uniform": [85.5, 86.0, 84.5, 86.5, 85.0], "mimetic-qk": [83.0, 84.0, 82.5, 84.5, 83.0]},
    "svhn": {"default": [90.0, 91.0, 92.0], "mimetic": [90.5, 90.0, 92.5]},   # no significant gain
    "cifar100": {"default": [60.0, 61.0], "mimetic": [50.0, 51.5]},            # reversed
    "digits": {"default": [95.0], "mimetic": [97.0]},                           # one seed
}
EPOCHS = 10
SECONDS_PER_EPOCH = {"default": 2.0}  # every other arm: 3.0 s per epoch


def curve(arm: str, seed: int, final: float) -> list[float]:
    """Test accuracy after epoch e = 1..EPOCHS: rises linearly to the final accuracy, which the
    baseline reaches at epoch 10 - seed and every other arm at epoch 5, then stays."""
    rise = 10 - seed if arm == "default" else 5
    return [final * min(1.0, e / rise) for e in range(1, EPOCHS + 1)]


def make(init_params: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs, epochs = [], []
    for exp, arms in FINAL.items():
        for arm, finals in arms.items():
            init, params = ARMS[arm]
            sec = SECONDS_PER_EPOCH.get(arm, 3.0)
            for seed, final in enumerate(finals):
                accs = curve(arm, seed, final)
                runs.append({"experiment": exp, "arm": arm, "kind": "vision", "init": init,
                             **({"init_params": json.dumps(params, sort_keys=True)} if init_params else {}),
                             "seed": seed, "dataset": exp, "model": "vit", "final_test_acc": final,
                             "best_test_acc": max(accs), "best_epoch": EPOCHS, "epochs": EPOCHS,
                             "wall_time": EPOCHS * sec, "device": "cpu"})
                epochs += [{"experiment": exp, "arm": arm, "seed": seed, "kind": "vision", "epoch": e, "lr": 1e-3,
                            "train_loss": 1.0,
                            "train_acc": a, "test_loss": 1.0, "test_acc": a, "images_per_s": 100.0,
                            "wall_time": e * sec} for e, a in zip(range(1, EPOCHS + 1), accs)]
    return pd.DataFrame(runs), pd.DataFrame(epochs)


def first_epoch(accs: list[float], target: float) -> float:
    """By hand: the first epoch (1-based) whose accuracy >= target, NaN if none."""
    return next((float(e) for e, a in enumerate(accs, 1) if a >= target), math.nan)


CLAIMS = [
    Claim("paper-cifar10", "cifar10", "default", "mimetic", 5.0, "gains of over 5%", "paper, abstract"),
    Claim("big-cifar10", "cifar10", "default", "mimetic", 8.0, "gains of 8% (made up)", "nobody"),
    Claim("paper-imagenet", "imagenet", "default", "mimetic", 4.0, "and 4%", "paper, abstract"),
    Claim("qk-svhn", "svhn", "default", "mimetic-qk", 1.0, "Q/K alone helps", "nobody"),
    Claim("svhn", "svhn", "default", "mimetic", 2.0, "SVHN gains", "nobody"),
    Claim("c100", "cifar100", "default", "mimetic", 3.0, "CIFAR-100 gains_50%", "nobody"),
    Claim("digits", "digits", "default", "mimetic", 1.0, "digits", "nobody"),
]
REFERENCES = [
    Reference("cs5782", "Cornell CS5782 (GitHub Lu-Shen939)", "third_party", "cifar10", "ViT-Tiny/16, 224 px",
              {"default": Accuracy(87.79, 0.38, 3), "mimetic": Accuracy(90.92, 0.46, 3)}),
    Reference("zheng2024", "Zheng et al. 2024", "third_party", "svhn", "patch 2, 200 epochs",
              {"mimetic": Accuracy(97.53)}),
]


# --- Language-model runs: validation loss in nats per token, lower is better ---------------------

# experiment -> arm -> final validation loss per seed; mimetic's is lower in every seed (a positive gain)
LM_FINAL = {"wikitext103": {"default": [3.00, 3.10, 2.95, 3.05], "mimetic": [2.90, 3.02, 2.80, 2.97]}}
LM_STEPS = [100, 200, 300, 400, 500]  # evaluations; the last is the run's iterations
LM_START = 6.0
LM_SECONDS_PER_EVAL = {"default": 10.0}  # every other arm: 12.0 s between evaluations


def lm_curve(arm: str, final: float) -> list[float]:
    """Validation loss at each of LM_STEPS: falls linearly from LM_START to the final loss, which
    the baseline reaches at the last step and every other arm at step 300, then stays."""
    reach = LM_STEPS[-1] if arm == "default" else 300
    return [final + (LM_START - final) * max(0.0, 1 - s / reach) for s in LM_STEPS]


def first_step(losses: list[float], target: float) -> float:
    """By hand: the first evaluation step whose loss <= target, NaN if none."""
    return next((float(s) for s, v in zip(LM_STEPS, losses) if v <= target), math.nan)


def write_lm_run(folder, experiment: str, arm: str, seed: int, losses: list[float],
                 steps: list[int] = LM_STEPS) -> tuple:
    """A language-model run's records as mimetic.train.lm writes them: (summary.json, metrics.csv, init.json)."""
    import numpy as np

    folder.mkdir(parents=True)
    sec = LM_SECONDS_PER_EVAL.get(arm, 12.0)
    losses = np.asarray(losses, float)
    pd.DataFrame({"step": steps, "lr": 1e-3, "train_loss": losses + 0.1, "val_loss": losses, "val_ppl": np.exp(losses),
                  "val_bits": losses / math.log(2), "tokens_per_s": 5000.0,
                  "wall_time": sec * np.arange(1, len(steps) + 1)}).to_csv(folder / "metrics.csv", index=False)
    init, params = ARMS[arm]
    best = int(np.argmin(losses))
    summary = {"kind": "lm", "experiment": experiment, "arm": arm, "seed": seed, "init": init, "init_params": params,
               "config": {"dataset": experiment, "model": "gpt_tiny", "tokenizer": "gpt2", "iterations": steps[-1]},
               "final_val_loss": float(losses[-1]), "best_val_loss": float(losses[best]), "best_step": steps[best],
               "final_val_ppl": math.exp(losses[-1]), "final_val_bits": losses[-1] / math.log(2),
               "iterations": steps[-1], "tokens_per_s": 5000.0, "wall_time": sec * len(steps), "device": "cpu",
               "unigram_entropy": 7.5, "vocab_size": 50257, "train_tokens": 10_000, "val_tokens": 1_000,
               "parameters": 1_000_000, "environment": {}}
    (folder / "summary.json").write_text(json.dumps(summary))
    stats = {"qk_diag_mean": 0.7 * (init != "default"), "qk_offdiag_abs_mean": 0.01, "vo_diag_mean": -0.4,
             "vo_offdiag_abs_mean": 0.01}
    record = {"init": init, "init_params": params, "touches": ["q", "k", "v", "proj"], "changed": {}, "layers": [stats]}
    (folder / "init.json").write_text(json.dumps(record))
    return folder / "summary.json", folder / "metrics.csv", folder / "init.json"


def lm_records(root) -> list[tuple]:
    """Every LM_FINAL run written under `root`, as load_runs takes them."""
    return [write_lm_run(root / exp / arm / f"seed{seed}", exp, arm, seed, lm_curve(arm, final))
            for exp, arms in LM_FINAL.items() for arm, finals in arms.items() for seed, final in enumerate(finals)]


def make_mixed(root) -> tuple[pd.DataFrame, pd.DataFrame]:
    """make()'s image-classification runs and the language-model runs, as one (runs, epochs)."""
    from mimetic.report.records import load_runs

    lm_runs, lm_epochs = load_runs(lm_records(root))
    runs, epochs = make()
    return pd.concat([runs, lm_runs], ignore_index=True), pd.concat([epochs, lm_epochs], ignore_index=True)


LM_CLAIMS = [
    Claim("lm-gain", "wikitext103", "default", "mimetic", None, "smaller gains", "paper", metric="final_val_loss",
          direction="positive"),
    Claim("lm-worse", "wikitext103", "default", "mimetic", None, "mimetic hurts (made up)", "nobody",
          metric="final_val_loss", direction="negative"),
]
