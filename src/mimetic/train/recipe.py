"""What a run computes: its recipe (`TrainConfig`), checked without torch.

Each field's metadata is the one owner of its default, bounds, choices and description: the
checks below read them, and the workflow's schema (its experiment recipe) and the recipe table of
config/README.md are generated from them (`mimetic schema --write`; a test fails when they are
stale).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mimetic.attention.init import INITS, check_params
from mimetic.data import DATASETS
from mimetic.data.core import BUILTIN, DATA_DIR, SHAPES, STREAMED, stage_files
from mimetic.data.text import TEXT_DATASETS, TOKENIZERS, text_stage_files
from mimetic.train._fields import check_fields, opt, recipe_json
from mimetic.train._policy import Policy
from mimetic.train.gpt import GPTS
from mimetic.train.models import MODELS, POOLS, POS_EMBEDS, check_image_size

FLIPS = ("auto", "yes", "no")
INTERPOLATIONS = ("bilinear", "bicubic")
DECODES = ("auto", "cpu", "device")
RANDAUGMENT_PATTERN = "^(rand(-[a-z]+[0-9.]+)*)?$"  # the schema's first check; Policy.parse the full one


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults: the CIFAR-10 recipe of paper-notes.md
    (AdamW, cosine with warm-up, clipping; ViT-Tiny, GAP, fixed sin-cos positions)."""

    dataset: str = opt(None, "`digits` (offline, scikit-learn), `synthetic` (tests), `cifar10`, `cifar100`, `svhn`, "
                              "`fashion_mnist`, `tiny_imagenet`, `imagenet` (see Datasets)",
                        choices=tuple(sorted([*DATASETS, *STREAMED])), required=True)
    model: str = opt(None, "the ViT (`mimetic.train.models`): its architecture; its image size must be the "
                            "dataset's", choices=tuple(sorted(MODELS)), required=True)
    data_root: str | None = opt(None, "a prepared folder (`train.npz`, `test.npz`, `meta.json`; ImageNet: "
                                       "`train.csv`, `val.csv`, `meta.json`) to read instead of "
                                       "`resources/data/<dataset>`; the run then does not depend on the data stage")
    pool: str = opt("avg", "`avg`: no class token, global average pooling; `token`: class token", choices=POOLS)
    pos_embed: str = opt("sincos", "`sincos`: fixed 2-D sin-cos position embeddings; `learned`",
                          choices=POS_EMBEDS)
    init: str = opt("default", "attention initialization (`mimetic inits` lists them); set by the arm",
                     choices=tuple(INITS))
    init_params: dict = opt({}, "the init's parameters, e.g. {\"alpha1\": 0.7}; set by the arm")
    seed: int = opt(0, "seed of model init, attention init, data order and augmentation; set per run", at_least=0)
    epochs: int = opt(200, "training epochs", at_least=1)
    batch_size: int = opt(512, "training batch size, all processes together (the last partial batch of an epoch is "
                                "dropped)", at_least=1)
    lr: float = opt(1e-3, "peak learning rate (AdamW)", above=0)
    min_lr: float = opt(1e-6, "final learning rate of the per-step cosine schedule, and the warm-up's start",
                         at_least=0)
    warmup_epochs: int = opt(10, "linear warm-up epochs", at_least=0)
    weight_decay: float = opt(0.01, "AdamW weight decay; timm's optimizer factory exempts norms, biases, position "
                                     "embeddings and the class token", at_least=0)
    opt_eps: float = opt(1e-3, "AdamW epsilon", above=0)
    clip_grad: float = opt(3.0, "gradient-norm clipping (0: off)", at_least=0)
    label_smoothing: float = opt(0.0, "label smoothing, applied by the loss to hard and mixed targets alike",
                                  at_least=0, below=1)
    drop_path: float = opt(0.0, "stochastic depth rate", at_least=0, below=1)
    crop_padding: int = opt(0, "random crop after zero padding by this many pixels (0: off); in-memory datasets "
                                "(ImageNet always takes a random-resized crop, scale 0.08-1, ratio 3/4-4/3)",
                             at_least=0)
    flip: str = opt("auto", "horizontal flips: `auto` = where the dataset allows (not digits, SVHN), `yes`, `no`",
                     choices=FLIPS)
    randaugment: str = opt("", "RandAugment on the device in timm's syntax, e.g. `rand-m9-mstd0.5-inc1`; empty: "
                                "off (docs/datasets.md: how it relates to timm's)", pattern=RANDAUGMENT_PATTERN)
    mixup: float = opt(0.0, "mixup Beta(alpha, alpha) parameter (0: off)", at_least=0)
    cutmix: float = opt(0.0, "cutmix Beta(alpha, alpha) parameter (0: off); with `mixup` too, one of the two per "
                              "batch", at_least=0)
    random_erasing: float = opt(0.0, "probability of erasing one random box per image with normal noise (timm's "
                                      "`RandomErasing`, mode `pixel`; 0: off)", at_least=0, below=1)
    interpolation: str = opt("bilinear", "ImageNet: resampling of crops and evaluation resizes (`bilinear`: "
                                          "ResNet-style, `bicubic`: DeiT)", choices=INTERPOLATIONS)
    eval_crop: float = opt(0.875, "ImageNet evaluation: resize to size / `eval_crop` (256 for 224), then "
                                   "centre-crop", above=0, at_most=1)
    decode: str = opt("auto", "ImageNet: where JPEGs are decoded: `cpu` (PIL in DataLoader workers), `device` "
                               "(nvJPEG on the training GPU through torchvision; workers only read the files), "
                               "`auto` (= `device` on a GPU). Both take the same crop boxes; pixels agree within a "
                               "grey level (tested on the CPU)", choices=DECODES)
    eval_batch_size: int = opt(1024, "evaluation batch size", at_least=1)
    amp: bool = opt(True, "bf16 autocast on CUDA (ignored on the CPU)")
    accum_steps: int = opt(1, "gradient accumulation: micro-batches per optimizer step, same global batch",
                            at_least=1)
    compile: bool = opt(False, "`torch.compile` the model (CUDA only; needs a C compiler)")
    checkpoint_every: int = opt(1, "epochs between checkpoints (and always at the end)", at_least=1)
    checkpoint_steps: int = opt(0, "ImageNet: also checkpoint every N optimizer steps within an epoch (0: off); a "
                                    "resumed run continues at that step with the same data", at_least=0)
    workers: int | None = opt(None, "ImageNet: DataLoader worker processes per training process (0: load in the "
                                     "training process); `null`: the CPUs this process may use (SLURM's "
                                     "`--cpus-per-task`) shared by the node's ranks, less one", at_least=0)

    # Fields that do not change what a run computes: a checkpoint made under other
    # values of these is still this run's.
    EXECUTION = ("data_root", "eval_batch_size", "accum_steps", "compile", "checkpoint_every", "checkpoint_steps",
                 "workers")

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first bad field; fill the arm's default parameters."""
        check_fields(self)
        if self.warmup_epochs >= self.epochs and self.epochs > 1:
            raise ValueError(f"warmup_epochs={self.warmup_epochs}: must be < epochs={self.epochs}")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr}: must be <= lr={self.lr} (the schedule decays from lr to min_lr)")
        if self.data_root is not None and self.dataset in BUILTIN:
            raise ValueError(f"data_root={self.data_root!r}: dataset={self.dataset!r} is built in and reads no folder; "
                             "remove data_root")
        self._check_input_keys()
        shape = SHAPES.get(self.dataset)
        if shape:
            check_image_size(self.model, self.dataset, shape.image_size)
        if shape and self.data_root is None and self.batch_size > shape.train_images:
            raise ValueError(f"batch_size={self.batch_size} is larger than dataset={self.dataset!r}'s "
                             f"{shape.train_images} training images; lower it")
        if self.batch_size % self.accum_steps:
            raise ValueError(f"batch_size={self.batch_size} is not divisible by accum_steps={self.accum_steps}")
        if self.randaugment:
            Policy.parse(self.randaugment)
        self.init_params = check_params(self.init, self.init_params)
        unmet = INITS[self.init].unmet_need(self)
        if unmet:
            key, want, have = unmet
            raise ValueError(f"init {self.init!r} needs {key}: {want} (this recipe has {have!r}): set it for the "
                             "experiment, so that every arm trains with it")
        return self

    def flips(self, dataset_allows: bool) -> bool:
        """Whether images are flipped: `flip: auto` follows the dataset (digits and SVHN do not allow it)."""
        return self.flip == "yes" or (self.flip == "auto" and dataset_allows)

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

    def data_meta(self) -> Path | None:
        """The data stage's meta.json this run reads (its `fingerprint` is the data's identity);
        None for a built-in dataset."""
        if self.dataset in BUILTIN:
            return None
        folder = Path(self.data_root) if self.data_root else DATA_DIR / self.dataset
        return folder / Path(stage_files(self.dataset)["meta"]).name


@dataclass
class LMConfig:
    """Everything that defines a language-model run (mimetic.train.lm): a GPT trained from scratch
    on one corpus. Defaults: nanoGPT's shakespeare_char recipe (AdamW, beta2 0.99, warm-up then
    cosine from 1e-3 to 1e-4, batch 64, context 256, 5,000 iterations), evaluated on the whole
    validation split."""

    dataset: str = opt(None, "`shakespeare_char` (Tiny Shakespeare), `wikitext103` (WikiText-103 raw), `text` (the "
                             "file `data.text.root`)", choices=TEXT_DATASETS, required=True)
    model: str = opt(None, "the GPT (`mimetic.train.gpt`): transformers' GPT-2 layout at this size",
                     choices=tuple(sorted(GPTS)), required=True)
    tokenizer: str = opt("char", "`char`: the corpus' characters; `byte`: UTF-8 bytes (vocabulary 256); `gpt2`: "
                                 "GPT-2's BPE (its files from the hub or `data.gpt2_tokenizer.root`)",
                         choices=TOKENIZERS)
    data_root: str | None = opt(None, "a folder holding the data stage's `tokens-<tokenizer>.npz` and `.json` to read "
                                      "instead of `resources/data/<dataset>`")
    init: str = opt("default", "attention initialization; set by the arm", choices=tuple(INITS))
    init_params: dict = opt({}, "the init's parameters; set by the arm")
    seed: int = opt(0, "seed of model init, attention init, the windows and dropout; set per run", at_least=0)
    iterations: int = opt(5000, "optimizer steps", at_least=1)
    warmup_iters: int = opt(100, "linear warm-up steps", at_least=0)
    lr: float = opt(1e-3, "peak learning rate (AdamW)", above=0)
    min_lr: float = opt(1e-4, "final learning rate of the cosine schedule", at_least=0)
    beta2: float = opt(0.99, "AdamW beta2 (nanoGPT's for small batches)", above=0, below=1)
    weight_decay: float = opt(0.1, "AdamW weight decay, on matrices only (not biases, norms)", at_least=0)
    grad_clip: float = opt(1.0, "gradient-norm clipping (0: off)", at_least=0)
    batch_size: int = opt(64, "windows per optimizer step", at_least=1)
    context: int = opt(256, "tokens per window (at most the model's positions)", at_least=2)
    eval_every: int = opt(250, "steps between evaluations on the whole validation split (and at the end)",
                          at_least=1)
    amp: bool = opt(True, "bf16 autocast on CUDA (ignored on the CPU)")
    eval_batch_size: int = opt(64, "windows per evaluation batch", at_least=1)
    checkpoint_every: int = opt(250, "steps between checkpoints", at_least=1)

    EXECUTION = ("data_root", "eval_batch_size", "checkpoint_every")

    def validate(self) -> "LMConfig":
        """Raise ValueError naming the first bad field; fill the arm's default parameters."""
        check_fields(self)
        positions = GPTS.lookup(self.model)()["n_positions"]
        if self.context > positions:
            raise ValueError(f"context={self.context}: model {self.model!r} has {positions} positions; lower it")
        if self.warmup_iters >= self.iterations:
            raise ValueError(f"warmup_iters={self.warmup_iters}: must be < iterations={self.iterations}")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr}: must be <= lr={self.lr} (the schedule decays from lr to min_lr)")
        self.init_params = check_params(self.init, self.init_params)
        if "lm" not in INITS[self.init].kinds:
            touches = ", ".join(INITS[self.init].touches)
            raise ValueError(f"init={self.init!r}: works on ViTs only (it writes {touches})")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def computed(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if k not in self.EXECUTION}

    def data_meta(self) -> Path:
        """The data stage's meta .json of this run's tokens (see TrainConfig.data_meta)."""
        meta = Path(text_stage_files(self.dataset, self.tokenizer)["meta"])
        return Path(self.data_root) / meta.name if self.data_root else meta


Recipe = TrainConfig | LMConfig


def kind(dataset: str) -> str:
    """The experiment kind of `dataset`: "lm" for a text corpus, else "vision"."""
    return "lm" if dataset in TEXT_DATASETS else "vision"


def recipe_class(dataset: str) -> type[TrainConfig] | type[LMConfig]:
    """The recipe dataclass of an experiment on `dataset`."""
    return LMConfig if kind(dataset) == "lm" else TrainConfig


def run_recipe(experiment: dict[str, Any], init: str, params: dict[str, Any]) -> str:
    """What one run computes, as canonical JSON (sorted keys, one encoding), for `mimetic train
    --recipe`: its experiment's recipe less the execution keys (and the workflow's `gpus`) and the
    keys at their default, with its arm's init. The workflow tracks this string, so a real recipe
    change re-runs the run, and neither a reordered config nor a key added here later (at a
    default that keeps what runs compute) does. summary.json records every key."""
    cls = recipe_class(experiment["dataset"])
    return json.dumps(recipe_json(cls, experiment, init, params), sort_keys=True)


def run_config(experiment: dict[str, Any], init: str, params: dict[str, Any], seed: int) -> Recipe:
    """The recipe of one run of the workflow's grid, as `mimetic train` builds it from run_recipe
    and execution_args (validated: the init's parameters filled in, as its summary.json records them)."""
    cls = recipe_class(experiment["dataset"])
    execution = {k: experiment[k] for k in cls.EXECUTION if experiment.get(k) is not None}
    return cls(**recipe_json(cls, experiment, init, params), **execution, seed=seed).validate()


def differences(recorded: dict[str, Any], cfg: Recipe) -> list[str]:
    """The recipe keys in which a recorded recipe (a checkpoint's, or a finished run's summary.json
    `config`) differs from cfg, execution keys aside. A key the record lacks (added to the recipe
    since, at its default) counts at its default, so a code update never disowns a run."""
    defaults = {f.name: f.default for f in dataclasses.fields(cfg) if f.default is not dataclasses.MISSING}
    recorded, now = {**defaults, **recorded}, cfg.to_dict()
    return sorted(k for k in recorded.keys() | now.keys()
                  if k not in cfg.EXECUTION and recorded.get(k) != now.get(k))


def execution_args(experiment: dict[str, Any], runs_per_gpu: int) -> list[str]:
    """How one run executes, as `mimetic train` options: its experiment's execution keys."""
    args = ["--gpus", str(experiment["gpus"]), "--runs-per-gpu", str(runs_per_gpu)]
    for key in recipe_class(experiment["dataset"]).EXECUTION:
        value, option = experiment.get(key), f"--{key.replace('_', '-')}"
        if isinstance(value, bool):
            args.append(option if value else f"--no-{option[2:]}")
        elif value is not None:
            args += [option, str(value)]
    return args
