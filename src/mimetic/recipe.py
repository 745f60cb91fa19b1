"""What a run computes, apart from the trainer: its config, its model, and a finished run.

Analysis code (structure extraction, figures) imports this module, never `mimetic.train`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mimetic.data import DATASETS
from mimetic.data.core import BUILTIN, SHAPES, STREAMED
from mimetic.data.augment import RandAugment
from mimetic.init import apply_init, check_params
from mimetic.models import MODELS, POOLS, POS_EMBEDS, create_model

FLIPS = ("auto", "yes", "no")
INTERPOLATIONS = ("bilinear", "bicubic")
DECODES = ("auto", "cpu", "device")


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
    init: str = _opt("default", "attention initialization (`mimetic inits` lists them)")
    init_params: dict = _opt({}, "the init's parameters, e.g. {\"alpha1\": 0.7}")
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
    crop_padding: int = _opt(0, "random crop after zero padding by this many pixels; 0 disables it (in-memory "
                                "datasets; ImageNet always takes a random-resized crop, scale 0.08-1)")
    flip: str = _opt("auto", f"{FLIPS}: horizontal flips; auto = only where the dataset allows")
    randaugment: str = _opt("", "RandAugment in timm's syntax, e.g. rand-m9-mstd0.5-inc1 (on the device); "
                                "empty disables it")
    mixup: float = _opt(0.0, "mixup Beta(alpha, alpha) parameter; 0 disables it")
    cutmix: float = _opt(0.0, "cutmix Beta(alpha, alpha) parameter; 0 disables it (with mixup too: "
                              "one of the two per batch)")
    random_erasing: float = _opt(0.0, "probability of erasing one random box per image with normal noise (timm's "
                                      "RandomErasing, mode 'pixel'); 0 disables it")
    interpolation: str = _opt("bilinear", f"{INTERPOLATIONS}: ImageNet's crop resampling (ResNet: bilinear, "
                                          "DeiT: bicubic)")
    eval_crop: float = _opt(0.875, "ImageNet evaluation: resize to size / eval_crop, then centre-crop size "
                                   "(224 px: 256 -> 224)")
    decode: str = _opt("auto", f"{DECODES}: where ImageNet JPEGs are decoded: PIL in CPU workers, or nvJPEG on the "
                               "training device; auto = the device when it is a GPU")
    eval_batch_size: int = _opt(1024, "evaluation batch size")
    amp: bool = _opt(True, "bf16 autocast on CUDA (ignored on the CPU)")
    accum_steps: int = _opt(1, "gradient accumulation: micro-batches per optimizer step (same global batch)")
    compile: bool = _opt(False, "torch.compile the model (CUDA only)")
    checkpoint_every: int = _opt(1, "epochs between checkpoints (the last epoch is always checkpointed)")
    checkpoint_steps: int = _opt(0, "also checkpoint every N optimizer steps within an epoch (streamed datasets, "
                                    "whose epochs are long); 0: epoch ends only")
    workers: int | None = _opt(None, "DataLoader workers of a streamed dataset; null: the CPUs of this process "
                                     "shared by the node's ranks, less one")

    # Fields that do not change what a run computes: a checkpoint made under other
    # values of these is still this run's.
    EXECUTION = ("data_root", "eval_batch_size", "accum_steps", "compile", "checkpoint_every", "checkpoint_steps",
                 "workers")

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first bad field; fill the arm's default parameters."""
        if self.dataset not in DATASETS and self.dataset not in STREAMED:
            raise ValueError(f"dataset={self.dataset!r}: unknown; choose one of {sorted([*DATASETS, *STREAMED])}")
        if self.model not in MODELS:
            raise ValueError(f"model={self.model!r}: unknown; choose one of {sorted(MODELS)}")
        for name, choices in (("pool", POOLS), ("pos_embed", POS_EMBEDS), ("flip", FLIPS),
                              ("interpolation", INTERPOLATIONS), ("decode", DECODES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}={getattr(self, name)!r}: choose one of {choices}")
        for name in ("epochs", "batch_size", "eval_batch_size", "accum_steps", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        for name in ("min_lr", "weight_decay", "clip_grad", "crop_padding", "warmup_epochs", "seed", "mixup",
                     "cutmix", "checkpoint_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 0")
        if not self.lr > 0 or not self.opt_eps > 0:
            raise ValueError(f"lr={self.lr}, opt_eps={self.opt_eps}: both must be > 0")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers={self.workers}: must be >= 0 (0: load in the training process)")
        if not 0 < self.eval_crop <= 1:
            raise ValueError(f"eval_crop={self.eval_crop}: must be in (0, 1]")
        for name in ("label_smoothing", "drop_path", "random_erasing"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be in [0, 1)")
        if self.warmup_epochs >= self.epochs and self.epochs > 1:
            raise ValueError(f"warmup_epochs={self.warmup_epochs}: must be < epochs={self.epochs}")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr}: must be <= lr={self.lr} (the schedule decays from lr to min_lr)")
        if self.data_root is not None and self.dataset in BUILTIN:
            raise ValueError(f"data_root={self.data_root!r}: dataset={self.dataset!r} is built in and reads no folder; "
                             "remove data_root")
        self._check_input_keys()
        shape = SHAPES.get(self.dataset)
        if shape and MODELS[self.model]["img_size"] != shape.image_size:
            raise ValueError(f"model={self.model!r} takes {MODELS[self.model]['img_size']}px images but "
                             f"dataset={self.dataset!r} has {shape.image_size}px; pick a matching model")
        if shape and self.data_root is None and self.batch_size > shape.train_images:
            raise ValueError(f"batch_size={self.batch_size} is larger than dataset={self.dataset!r}'s "
                             f"{shape.train_images} training images; lower it")
        if self.batch_size % self.accum_steps:
            raise ValueError(f"batch_size={self.batch_size} is not divisible by accum_steps={self.accum_steps}")
        if self.randaugment:
            RandAugment.parse(self.randaugment)
        self.init_params = check_params(self.init, self.init_params)
        return self

    def _check_input_keys(self) -> None:
        """Keys that only one kind of input source reads must not be set for the other."""
        defaults = TrainConfig(dataset=self.dataset, model=self.model)
        if self.dataset in STREAMED:
            unused = ["crop_padding"]
            why = "it is streamed with a random-resized crop"
        else:
            unused = ["interpolation", "eval_crop", "decode", "checkpoint_steps", "workers"]
            why = "it is held in memory (these keys are for streamed datasets: imagenet)"
        for name in unused:
            if getattr(self, name) != getattr(defaults, name):
                raise ValueError(f"{name}={getattr(self, name)!r} does not apply to dataset={self.dataset!r}: {why}; "
                                 "remove it")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def computed(self) -> dict[str, Any]:
        """The fields that decide what the run computes: all but EXECUTION."""
        return {k: v for k, v in self.to_dict().items() if k not in self.EXECUTION}


def build_model(cfg: TrainConfig, *, num_classes: int, in_chans: int) -> nn.Module:
    """The run's model: timm's init seeded by cfg.seed, then its attention init.

    The attention noise has its own generator, so every init leaves the global RNG (and with
    it data order and dropout) in the same state.
    """
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, num_classes=num_classes, in_chans=in_chans, pool=cfg.pool,
                         pos_embed=cfg.pos_embed, drop_path=cfg.drop_path)
    return apply_init(model, cfg.init, seed=cfg.seed, **cfg.init_params)


STAGES = ("init", "final")


def load_run(run_dir: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """A finished run's summary.json and the path of its final.safetensors."""
    run_dir = Path(run_dir)
    summary, weights = run_dir / "summary.json", run_dir / "final.safetensors"
    for path in (summary, weights):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a finished training run "
                                    "(run `mimetic train` or the workflow's train_run rule first)")
    return json.loads(summary.read_text()), weights


def run_model(summary: dict[str, Any], weights: str | os.PathLike, stage: str) -> nn.Module:
    """A finished run's model: stage "init" rebuilds the exact model it started from (same
    seed, same init), "final" loads the weights it ended with."""
    if stage not in STAGES:
        raise ValueError(f"stage={stage!r}: choose one of {STAGES}")
    from safetensors.torch import load_file

    cfg = TrainConfig(**summary["config"]).validate()
    state = load_file(str(weights))
    model = build_model(cfg, num_classes=state["head.weight"].shape[0],
                        in_chans=state["patch_embed.proj.weight"].shape[1])
    if stage == "final":
        model.load_state_dict(state)
    return model.eval()
