"""What a run computes: its recipe (`TrainConfig`), checked without torch.

Each field's metadata is the one owner of its default, bounds, choices and description: the
checks below read them, and the workflow's schema (its experiment recipe) and the recipe table of
config/README.md are generated from them (`mimetic schema --write`; a test fails when they are
stale).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from mimetic.attention.init import INITS, check_params
from mimetic.data import DATASETS
from mimetic.data.core import BUILTIN, SHAPES, STREAMED
from mimetic.train._policy import Policy
from mimetic.train.models import MODELS, POOLS, POS_EMBEDS, check_image_size

FLIPS = ("auto", "yes", "no")
INTERPOLATIONS = ("bilinear", "bicubic")
DECODES = ("auto", "cpu", "device")
RANDAUGMENT_PATTERN = "^(rand(-[a-z]+[0-9.]+)*)?$"  # the schema's first check; Policy.parse the full one


def _opt(default: Any, help: str, *, choices: tuple | None = None, at_least: float | None = None,
         above: float | None = None, below: float | None = None, at_most: float | None = None,
         required: bool = False, pattern: str | None = None) -> Any:
    """A recipe field: its default, description (`help`) and bounds, which the checks and the
    generated schema and docs read. at_least/above bound from below (>=, >), below/at_most from
    above (<, <=)."""
    meta = {"help": help, "choices": choices, "at_least": at_least, "above": above, "below": below,
            "at_most": at_most, "required": required, "pattern": pattern}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults: the CIFAR-10 recipe of paper-notes.md
    (AdamW, cosine with warm-up, clipping; ViT-Tiny, GAP, fixed sin-cos positions)."""

    dataset: str = _opt(None, "`digits` (offline, scikit-learn), `synthetic` (tests), `cifar10`, `cifar100`, `svhn`, "
                              "`tiny_imagenet`, `imagenet` (see Datasets)",
                        choices=tuple(sorted([*DATASETS, *STREAMED])), required=True)
    model: str = _opt(None, "the ViT (`mimetic.train.models`): its architecture; its image size must be the "
                            "dataset's", choices=tuple(sorted(MODELS)), required=True)
    data_root: str | None = _opt(None, "a prepared folder (`train.npz`, `test.npz`, `meta.json`; ImageNet: "
                                       "`train.csv`, `val.csv`, `meta.json`) to read instead of "
                                       "`resources/data/<dataset>`; the run then does not depend on the data stage")
    pool: str = _opt("avg", "`avg`: no class token, global average pooling; `token`: class token", choices=POOLS)
    pos_embed: str = _opt("sincos", "`sincos`: fixed 2-D sin-cos position embeddings; `learned`",
                          choices=POS_EMBEDS)
    init: str = _opt("default", "attention initialization (`mimetic inits` lists them); set by the arm",
                     choices=tuple(INITS))
    init_params: dict = _opt({}, "the init's parameters, e.g. {\"alpha1\": 0.7}; set by the arm")
    seed: int = _opt(0, "seed of model init, attention init, data order and augmentation; set per run", at_least=0)
    epochs: int = _opt(200, "training epochs", at_least=1)
    batch_size: int = _opt(512, "training batch size, all processes together (the last partial batch of an epoch is "
                                "dropped)", at_least=1)
    lr: float = _opt(1e-3, "peak learning rate (AdamW)", above=0)
    min_lr: float = _opt(1e-6, "final learning rate of the per-step cosine schedule, and the warm-up's start",
                         at_least=0)
    warmup_epochs: int = _opt(10, "linear warm-up epochs", at_least=0)
    weight_decay: float = _opt(0.01, "AdamW weight decay; timm's optimizer factory exempts norms, biases, position "
                                     "embeddings and the class token", at_least=0)
    opt_eps: float = _opt(1e-3, "AdamW epsilon", above=0)
    clip_grad: float = _opt(3.0, "gradient-norm clipping (0: off)", at_least=0)
    label_smoothing: float = _opt(0.0, "label smoothing, applied by the loss to hard and mixed targets alike",
                                  at_least=0, below=1)
    drop_path: float = _opt(0.0, "stochastic depth rate", at_least=0, below=1)
    crop_padding: int = _opt(0, "random crop after zero padding by this many pixels (0: off); in-memory datasets "
                                "(ImageNet always takes a random-resized crop, scale 0.08-1, ratio 3/4-4/3)",
                             at_least=0)
    flip: str = _opt("auto", "horizontal flips: `auto` = where the dataset allows (not digits, SVHN), `yes`, `no`",
                     choices=FLIPS)
    randaugment: str = _opt("", "RandAugment on the device in timm's syntax, e.g. `rand-m9-mstd0.5-inc1`; empty: "
                                "off (docs/datasets.md: how it relates to timm's)", pattern=RANDAUGMENT_PATTERN)
    mixup: float = _opt(0.0, "mixup Beta(alpha, alpha) parameter (0: off)", at_least=0)
    cutmix: float = _opt(0.0, "cutmix Beta(alpha, alpha) parameter (0: off); with `mixup` too, one of the two per "
                              "batch", at_least=0)
    random_erasing: float = _opt(0.0, "probability of erasing one random box per image with normal noise (timm's "
                                      "`RandomErasing`, mode `pixel`; 0: off)", at_least=0, below=1)
    interpolation: str = _opt("bilinear", "ImageNet: resampling of crops and evaluation resizes (`bilinear`: "
                                          "ResNet-style, `bicubic`: DeiT)", choices=INTERPOLATIONS)
    eval_crop: float = _opt(0.875, "ImageNet evaluation: resize to size / `eval_crop` (256 for 224), then "
                                   "centre-crop", above=0, at_most=1)
    decode: str = _opt("auto", "ImageNet: where JPEGs are decoded: `cpu` (PIL in DataLoader workers), `device` "
                               "(nvJPEG on the training GPU through torchvision; workers only read the files), "
                               "`auto` (= `device` on a GPU). Both take the same crop boxes; pixels agree within a "
                               "grey level (tested on the CPU)", choices=DECODES)
    eval_batch_size: int = _opt(1024, "evaluation batch size", at_least=1)
    amp: bool = _opt(True, "bf16 autocast on CUDA (ignored on the CPU)")
    accum_steps: int = _opt(1, "gradient accumulation: micro-batches per optimizer step, same global batch",
                            at_least=1)
    compile: bool = _opt(False, "`torch.compile` the model (CUDA only; needs a C compiler)")
    checkpoint_every: int = _opt(1, "epochs between checkpoints (and always at the end)", at_least=1)
    checkpoint_steps: int = _opt(0, "ImageNet: also checkpoint every N optimizer steps within an epoch (0: off); a "
                                    "resumed run continues at that step with the same data", at_least=0)
    workers: int | None = _opt(None, "ImageNet: DataLoader worker processes per training process (0: load in the "
                                     "training process); `null`: the CPUs this process may use (SLURM's "
                                     "`--cpus-per-task`) shared by the node's ranks, less one", at_least=0)

    # Fields that do not change what a run computes: a checkpoint made under other
    # values of these is still this run's.
    EXECUTION = ("data_root", "eval_batch_size", "accum_steps", "compile", "checkpoint_every", "checkpoint_steps",
                 "workers")

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first bad field; fill the arm's default parameters."""
        for f in dataclasses.fields(self):
            _check_field(f, getattr(self, f.name))
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



_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "dict": dict}


def _check_field(f: dataclasses.Field, value: Any) -> None:
    """ValueError `name=value: what is wrong` for a value of the wrong type or out of its field's bounds."""
    m, name = f.metadata, f.name
    if value is None:
        if m["required"] or "None" not in str(f.type):
            raise ValueError(f"{name}: missing; it is required" if m["required"] else f"{name}=None: must be set")
        return
    kind = _TYPES[str(f.type).replace(" | None", "")]
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        what = {str: "a string", int: "an integer", bool: "true or false", dict: "a mapping"}.get(kind, "a number")
        raise ValueError(f"{name}={value!r}: must be {what}")
    if m["choices"] is not None and value not in m["choices"]:
        raise ValueError(f"{name}={value!r}: unknown; choose one of {list(m['choices'])}")
    low = ">=" if m["at_least"] is not None else ">" if m["above"] is not None else None
    high = "<" if m["below"] is not None else "<=" if m["at_most"] is not None else None
    lo = m["at_least"] if m["at_least"] is not None else m["above"]
    hi = m["below"] if m["below"] is not None else m["at_most"]
    bad_low = low and (value < lo if low == ">=" else value <= lo)
    bad_high = high and (value >= hi if high == "<" else value > hi)
    if bad_low or bad_high:
        if low and high:
            raise ValueError(f"{name}={value}: must be in {'[' if low == '>=' else '('}{lo:g}, {hi:g}"
                             f"{')' if high == '<' else ']'}")
        raise ValueError(f"{name}={value}: must be {low or high} {lo if low else hi:g}")


def schema_properties() -> dict[str, dict[str, Any]]:
    """The JSON-schema property of every recipe field but those an arm or a run sets (init,
    init_params, seed): what the workflow's experiment section takes."""
    out = {}
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("init", "init_params", "seed"):
            continue
        m, base = f.metadata, str(f.type).replace(" | None", "")
        prop: dict[str, Any] = {}
        if m["choices"] is not None:
            prop["enum"] = list(m["choices"])
        else:
            kind = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}[base]
            prop["type"] = [kind, "null"] if "None" in str(f.type) else kind
        for key, schema_key in (("at_least", "minimum"), ("above", "exclusiveMinimum"), ("below", "exclusiveMaximum"),
                                ("at_most", "maximum")):
            if m[key] is not None:
                prop[schema_key] = m[key]
        if m["pattern"]:
            prop["pattern"] = m["pattern"]
        if not m["required"]:
            prop["default"] = f.default
        prop["description"] = m["help"]
        out[f.name] = prop
    return out


def run_recipe(experiment: dict[str, Any], init: str, params: dict[str, Any]) -> str:
    """What one run computes, as canonical JSON (sorted keys, one encoding), for `mimetic train
    --recipe`: its experiment's recipe less the execution keys (and the workflow's `gpus`) and the
    keys at their default, with its arm's init. The workflow tracks this string, so a real recipe
    change re-runs the run, and neither a reordered config nor a key added here later (at a
    default that keeps what runs compute) does. summary.json records every key."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    keys = {k: v for k, v in experiment.items()
            if k in defaults and k not in TrainConfig.EXECUTION and v != defaults[k]}
    return json.dumps({**keys, "init": init, "init_params": params}, sort_keys=True)


def execution_args(experiment: dict[str, Any], runs_per_gpu: int) -> list[str]:
    """How one run executes, as `mimetic train` options: its experiment's execution keys."""
    args = ["--gpus", str(experiment["gpus"]), "--runs-per-gpu", str(runs_per_gpu)]
    for key in TrainConfig.EXECUTION:
        value, option = experiment.get(key), f"--{key.replace('_', '-')}"
        if isinstance(value, bool):
            args.append(option if value else f"--no-{option[2:]}")
        elif value is not None:
            args += [option, str(value)]
    return args
