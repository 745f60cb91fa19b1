"""Datasets that need no data stage: scikit-learn's digits (offline) and synthetic images."""

from __future__ import annotations

from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

from mimetic.data.core import ImageData, register_dataset


DIGITS_SPLIT = ("x_train", "y_train", "x_test", "y_test")


def digits_split() -> tuple:
    """scikit-learn's digits in its fixed stratified 80/20 split (x_train, y_train, x_test,
    y_test as numpy arrays), cached per scikit-learn version: importing scikit-learn takes about
    3 s, longer than a digits run's training, and the split never changes for one version."""
    from importlib.metadata import version

    import numpy as np

    from mimetic import io

    path = io.cache_dir() / f"digits-split-scikit-learn-{version('scikit-learn')}.npz"
    try:
        with np.load(path) as cached:
            return tuple(cached[k] for k in DIGITS_SPLIT)
    except (OSError, KeyError, ValueError):
        pass
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    # Pixel values are 0..16; scale to the uint8 range every other dataset uses.
    images = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, bunch.target, test_size=0.2, stratify=bunch.target, random_state=0
    )
    split = (x_tr, y_tr, x_te, y_te)
    try:
        with io.atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **dict(zip(DIGITS_SPLIT, split)))
    except OSError:
        pass  # a read-only home: the split is made again next time
    return split


@register_dataset("digits")
def load_digits(root: Path | None = None) -> ImageData:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, offline), with a fixed
    stratified 80/20 train/test split."""
    import torch

    x_tr, y_tr, x_te, y_te = digits_split()
    return ImageData("digits", torch.from_numpy(x_tr), torch.from_numpy(y_tr).long(),
                     torch.from_numpy(x_te), torch.from_numpy(y_te).long(), num_classes=10, flip=False)


@register_dataset("synthetic")
def load_synthetic(root: Path | None = None, *, n_train: int = 2048, n_test: int = 512, size: int = 32,
                   num_classes: int = 10) -> ImageData:
    """CIFAR-shaped class-conditional noise (fixed seed): learnable, for tests and benchmarks."""
    import torch

    gen = torch.Generator().manual_seed(1234)
    templates = torch.rand(num_classes, 3, size, size, generator=gen) * 255

    def draw(n: int) -> tuple[Tensor, Tensor]:
        y = torch.randint(num_classes, (n,), generator=gen)
        x = templates[y] * 0.5 + torch.rand(n, 3, size, size, generator=gen) * 127
        return x.clamp(0, 255).to(torch.uint8), y

    (x_tr, y_tr), (x_te, y_te) = draw(n_train), draw(n_test)
    return ImageData("synthetic", x_tr, y_tr, x_te, y_te, num_classes=num_classes, flip=True)
