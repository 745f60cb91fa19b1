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
                runs.append({"experiment": exp, "arm": arm, "init": init,
                             **({"init_params": json.dumps(params, sort_keys=True)} if init_params else {}),
                             "seed": seed, "dataset": exp, "model": "vit", "final_test_acc": final,
                             "best_test_acc": max(accs), "best_epoch": EPOCHS, "epochs": EPOCHS,
                             "wall_time": EPOCHS * sec, "device": "cpu"})
                epochs += [{"experiment": exp, "arm": arm, "seed": seed, "epoch": e, "lr": 1e-3, "train_loss": 1.0,
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
