"""What `mimetic bench` measures: its options, with their help; the CLI's flags are made from
these fields (no torch: `mimetic --help` stays fast)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

COMPILE_MODES = ("off", "default", "max-autotune", "reduce-overhead")


def _opt(default: Any, help: str, *, choices: tuple | None = None, onoff: bool = False, cli: bool = True,
         at_least: int | None = None) -> Any:
    meta = {"help": help, "choices": choices, "onoff": onoff, "cli": cli, "at_least": at_least}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Options:
    """What `mimetic bench` measures; the CLI's flags, one to one (`cli=False`: internal)."""

    model: str = _opt("vit_tiny_patch2_32", "model name (mimetic.train.models.MODELS)")
    dataset: str = _opt("synthetic", "the run's dataset; synthetic: CIFAR-shaped, built in")
    data_root: str | None = _opt(None, "the dataset's folder (imagenet: its index folder)")
    recipe: dict = _opt({}, "further recipe keys as a JSON object (e.g. crop_padding, mixup)")
    batch_size: int = _opt(512, "training batch size", at_least=1)
    randaugment: str = _opt("rand-m9-mstd0.5-inc1", "RandAugment spec; '' disables it")
    images: int = _opt(50_000, "synthetic dataset: training images (CIFAR's count)", at_least=1)
    test_images: int = _opt(10_000, "synthetic dataset: test images", at_least=1)
    device: str = _opt("auto", "cuda, cuda:N or cpu; auto: cuda if visible")
    threads: int = _opt(0, "torch CPU threads (0: torch's default)", at_least=0)
    amp: bool = _opt(True, "bf16 autocast (CUDA only)", onoff=True)
    fused: str = _opt("auto", "fused AdamW for the project's step; auto: as a run (fused on CUDA)",
                      choices=("auto", "on", "off"))
    sdpa: bool = _opt(True, "attention through F.scaled_dot_product_attention (flash/efficient kernels) or "
                            "explicit products, in the project's step", onoff=True)
    compile: str = _opt("off", "torch.compile mode of the project's model (reduce-overhead: CUDA graphs); CUDA only",
                        choices=COMPILE_MODES)
    warmup: int = _opt(10, "untimed steps first (compilation, workers)", at_least=0)
    steps: int = _opt(20, "steps per timed window", at_least=1)
    repeats: int = _opt(5, "timed windows; figures are their medians", at_least=1)
    reference: bool = _opt(True, "also time the reference loop", onoff=True)
    workers: int | None = _opt(None, "the reference loop's DataLoader workers (default: this process's CPUs less one)",
                               at_least=0)
    eval: bool = _opt(True, "also time one evaluation pass", onoff=True)
    pack: int = _opt(0, "also time K processes training at once on the device, against one run (0: skip)", at_least=0)
    matmul_size: int | None = _opt(None, "side of the matrix product that measures the peak (default 8192 on CUDA, "
                                         "1024 on the CPU)", at_least=1)
    # packing workers only: wait here until `barrier_count` workers are warm, then time
    barrier: str | None = _opt(None, "", cli=False)
    barrier_count: int = _opt(0, "", cli=False)

    def config(self) -> Any:
        """The recipe the bench runs (a validated mimetic.train.recipe.TrainConfig)."""
        from mimetic.train.recipe import TrainConfig

        keys = {**self.recipe, "dataset": self.dataset, "model": self.model, "batch_size": self.batch_size,
                "randaugment": self.randaugment, "data_root": self.data_root, "amp": self.amp,
                "compile": self.compile != "off"}
        return TrainConfig(**keys).validate()


def cli_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(Options) if f.metadata["cli"]]
