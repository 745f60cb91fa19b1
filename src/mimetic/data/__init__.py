"""Datasets as whole uint8 tensors: small enough to live on the training device."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


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
        x = self.train_x.float().div_(255)
        return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))


Loader = Callable[[Path | None], ImageData]
DATASETS: dict[str, Loader] = {}


def register(name: str) -> Callable[[Loader], Loader]:
    def add(fn: Loader) -> Loader:
        DATASETS[name] = fn
        return fn

    return add


def load_dataset(name: str, root: str | Path | None = None) -> ImageData:
    """Load dataset `name` from `root` (its prepared folder; unused by built-in datasets)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name](Path(root) if root is not None else None)


@register("digits")
def load_digits(root: Path | None = None) -> ImageData:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, offline), with a fixed
    stratified 80/20 train/test split."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    # Pixel values are 0..16; scale to the uint8 range every other dataset uses.
    images = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, bunch.target, test_size=0.2, stratify=bunch.target, random_state=0
    )
    return ImageData("digits", torch.from_numpy(x_tr), torch.from_numpy(y_tr).long(),
                     torch.from_numpy(x_te), torch.from_numpy(y_te).long(), num_classes=10, flip=False)


@register("synthetic")
def load_synthetic(root: Path | None = None, *, n_train: int = 2048, n_test: int = 512, size: int = 32,
                   num_classes: int = 10) -> ImageData:
    """CIFAR-shaped class-conditional noise (fixed seed): learnable, for tests and benchmarks."""
    gen = torch.Generator().manual_seed(1234)
    templates = torch.rand(num_classes, 3, size, size, generator=gen) * 255

    def draw(n: int) -> tuple[Tensor, Tensor]:
        y = torch.randint(num_classes, (n,), generator=gen)
        x = templates[y] * 0.5 + torch.rand(n, 3, size, size, generator=gen) * 127
        return x.clamp(0, 255).to(torch.uint8), y

    (x_tr, y_tr), (x_te, y_te) = draw(n_train), draw(n_test)
    return ImageData("synthetic", x_tr, y_tr, x_te, y_te, num_classes=num_classes, flip=True)
