"""In-memory datasets: the ImageData container, the registry, the errors of the data stage and its data fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING, Any

from mimetic.registry import Registry

if TYPE_CHECKING:  # numpy and torch on first use: the config check and analysis commands import this module
    import numpy as np
    from torch import Tensor

# Where the data stage puts each dataset (relative to the workflow's working directory), and the
# files it writes there (key -> name): an in-memory dataset's arrays, or ImageNet's index.
DATA_DIR = Path("resources/data")
ARRAY_FILES = {"train": "train.npz", "test": "test.npz", "meta": "meta.json"}
INDEX_FILES = {"train": "train.csv", "test": "val.csv", "meta": "meta.json"}


def stage_files(name: str) -> dict[str, str]:
    """key -> the data stage's default file for dataset `name` (the workflow's rule outputs)."""
    files = INDEX_FILES if name == "imagenet" else ARRAY_FILES
    return {key: f"{DATA_DIR}/{name}/{file}" for key, file in files.items()}


def config_key(dataset: str) -> str:
    """The config key that points `dataset` at a local copy."""
    return f"data.{dataset}.root"


def own_folder(dataset: str) -> Path:
    """The project's own folder for `dataset`'s upstream files (the default of data.<name>.root)."""
    return DATA_DIR / dataset


def is_own_folder(dataset: str, root: str | Path) -> bool:
    return Path(root).resolve() == own_folder(dataset).resolve()


def stage_args(cfg: Mapping[str, Any]) -> list[str]:
    """`mimetic prepare` options from a config's `data.<name>` section (ImageNet without a root: the
    command stops, naming the key)."""
    args = [] if cfg.get("root") is None else ["--root", str(cfg["root"])]
    if cfg.get("classes") is not None:
        args += ["--classes", *map(str, cfg["classes"] if isinstance(cfg["classes"], list) else [cfg["classes"]])]
    for key in ("train_per_class", "val_per_class"):
        if cfg.get(key) is not None:
            args += [f"--{key.replace('_', '-')}", str(cfg[key])]
    return args


Outputs = str | Path | Mapping[str, str | Path | None] | None


def output_files(name: str, given: Outputs, files: Mapping[str, str]) -> dict[str, Path]:
    """Where the data stage writes dataset `name`: each of `files` (key -> file name) at the path
    given for its key (the workflow passes the files its rule declares), or in the folder given,
    or in DATA_DIR/name."""
    if given is None or isinstance(given, (str, Path)):
        folder = DATA_DIR / name if given is None else Path(given)
        return {key: folder / file for key, file in files.items()}
    return {key: Path(given[key]) if given.get(key) else DATA_DIR / name / file for key, file in files.items()}


class Fingerprint:
    """A sha256 over what a run reads of a data stage's output, never where it lies: pointing the config at
    an identical copy elsewhere is the same data, different content is other data (meta.json's
    `fingerprint`). Each part is framed (a JSON line, or an array's header then its bytes), so no
    two sequences of parts hash alike."""

    def __init__(self, scheme: str) -> None:
        self._sha = hashlib.sha256()
        self.add(scheme)  # the kind of data and the layout of this hash: a change of either is other data

    def add(self, value: Any) -> Fingerprint:
        """`value` as one JSON line (compact JSON has no raw newline, so the line ends it)."""
        # ASCII JSON: a name that is not valid UTF-8 (a surrogate escape) is escaped, not an error.
        self._sha.update(json.dumps(value, separators=(",", ":")).encode("ascii") + b"\n")
        return self

    def add_array(self, array: np.ndarray) -> Fingerprint:
        """`array`'s dtype (with byte order), shape and bytes in C order."""
        import numpy as np

        array = np.ascontiguousarray(array)  # no copy for the data stage's arrays, already contiguous
        self.add(["array", array.dtype.str, list(array.shape)])
        self._sha.update(array.reshape(-1).view(np.uint8))  # the bytes in place: no copy of a 150 MB split
        return self

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def data_fingerprint(meta_path: str | os.PathLike | None) -> str | None:
    """The `fingerprint` of a data stage's meta.json; None if there is no such file (a built-in
    dataset: None) or it has none (written before there was one)."""
    if meta_path is None or not Path(meta_path).is_file():
        return None
    return json.loads(Path(meta_path).read_text()).get("fingerprint")


class DatasetError(RuntimeError):
    """A dataset cannot be provided; the message says what to do about it."""


class DatasetUnavailable(DatasetError):
    """The dataset is not where the config says and is not downloaded: offline, never downloadable,
    or the folder named is the user's own (only the project's own folder is downloaded into)."""


class CorruptFile(DatasetError):
    """A file failed its checksum or could not be read. Only the project's own downloads are moved aside
    (renamed to *.corrupt) or removed; a copy of the user's is left as it is."""


@dataclass
class ImageData:
    """A labelled image dataset held in memory. Images are uint8 (N, C, H, W)."""

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    flip: bool  # whether a horizontal flip keeps an image's meaning

    @property
    def channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_x.shape[-1]

    def stats(self) -> tuple[Tensor, Tensor]:
        """Per-channel mean and std of the training images, in [0, 1] units."""
        # Per channel, so peak memory is one channel in float, not the whole set (CIFAR: 200 MB, not 600).
        import torch

        mean, std = [], []
        for c in range(self.channels):
            x = self.train_x[:, c].float().div_(255)
            mean.append(x.mean())
            std.append(x.std())
        return torch.stack(mean), torch.stack(std)


@dataclass(frozen=True)
class Shape:
    """What a recipe is checked against before any data is on disk."""

    image_size: int
    train_images: int


# The datasets whose contents are fixed (a copy elsewhere, `data_root`, is read as it is).
SHAPES = {
    "digits": Shape(8, 1437),  # scikit-learn's 1797 digits, 80% for training
    "synthetic": Shape(32, 2048),
    "cifar10": Shape(32, 50_000),
    "cifar100": Shape(32, 50_000),
    "svhn": Shape(32, 73_257),
    "fashion_mnist": Shape(28, 60_000),
    "tiny_imagenet": Shape(64, 100_000),
}
# The data stage's datasets (mimetic.data.stage.PREPARED has their sources; a test keeps the two equal).
PREPARED_NAMES = ("cifar10", "cifar100", "svhn", "fashion_mnist", "tiny_imagenet")
BUILTIN = ("digits", "synthetic")  # made in memory: no data stage, no `data_root`
# Read from disk while training (mimetic.train.stream.StreamInputs), not held in memory; `data_root`
# is the folder of the data stage's index (default resources/data/<name>).
STREAMED = ("imagenet",)

Loader = Callable[[Path | None], ImageData]
DATASETS: Registry[Loader] = Registry("dataset")  # the in-memory datasets' loaders
register_dataset = DATASETS.register


def load_dataset(name: str, root: str | Path | None = None) -> ImageData:
    """Load dataset `name` from `root`: its prepared folder (default resources/data/<name>);
    unused by the built-in datasets (digits, synthetic)."""
    hint = f"; {name} is streamed from its folder (mimetic.train.stream.StreamInputs)" if name in STREAMED else ""
    return DATASETS.lookup(name, hint)(Path(root) if root is not None else None)


@dataclass
class Arrays:
    """A dataset as read from its upstream files: uint8 (N, C, H, W) images, int64 labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]
