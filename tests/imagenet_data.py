"""A small ImageNet-layout folder of real JPEG files, made from scikit-learn's digits.

train/<wnid>/*.JPEG and val/<wnid>/*.JPEG; each class is a digit, drawn large in a class colour
on a photo-sized canvas of varied size. Among the training images: a greyscale JPEG, a CMYK JPEG,
a PNG named .JPEG (ImageNet has one) and a truncated, unreadable JPEG. `folder_mistake` then
breaks a copy of it the ways a user's copy can be broken.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

WNIDS = ["n01440764", "n01443537", "n01484850"]
COLORS = [(230, 40, 40), (40, 200, 40), (40, 40, 230)]
CORRUPT = f"train/{WNIDS[1]}/{WNIDS[1]}_corrupt.JPEG"


def _image(digit: np.ndarray, color: tuple[int, int, int], size: tuple[int, int], rng: np.random.Generator
           ) -> Image.Image:
    glyph = Image.fromarray((digit / 16 * 255).astype(np.uint8)).resize((min(size), min(size)), Image.BILINEAR)
    ink = np.asarray(glyph, dtype=np.float32)[..., None] / 255
    canvas = np.full((min(size), min(size), 3), 128, np.float32) * (1 - ink) + np.array(color) * ink
    canvas += rng.normal(0, 8, canvas.shape)
    img = Image.new("RGB", size, (128, 128, 128))
    img.paste(Image.fromarray(canvas.clip(0, 255).astype(np.uint8)), ((size[0] - min(size)) // 2, 0))
    return img


def imagenet_folder(root: Path, train: int = 8, val: int = 3, seed: int = 0) -> Path:
    """Write the folder under `root`; returns `root`."""
    digits = load_digits()
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("val", val)):
        for label, (wnid, color) in enumerate(zip(WNIDS, COLORS)):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            pool = digits.images[digits.target == label]
            for k in range(n):
                size = (int(rng.integers(40, 90)), int(rng.integers(36, 70)))
                img = _image(pool[(k + (0 if split == "train" else 100)) % len(pool)], color, size, rng)
                img.save(folder / f"{wnid}_{k}.JPEG", quality=90)
    cls = root / "train" / WNIDS[0]
    _image(digits.images[0], COLORS[0], (60, 50), rng).convert("L").save(cls / f"{WNIDS[0]}_grey.JPEG")
    _image(digits.images[0], COLORS[0], (64, 48), rng).convert("CMYK").save(cls / f"{WNIDS[0]}_cmyk.JPEG")
    _image(digits.images[0], COLORS[0], (50, 50), rng).save(cls / f"{WNIDS[0]}_png.JPEG", format="PNG")
    good = (root / "train" / WNIDS[1] / f"{WNIDS[1]}_0.JPEG").read_bytes()
    (root / CORRUPT).write_bytes(good[: len(good) // 2])
    (cls / "notes.txt").write_text("not an image")  # skipped by extension
    return root


def folder_mistake(root: Path, kind: str) -> str:
    """Break the last class folder of `root`'s val/ (scanned last: train/ is fine): "empty" (no image
    left), or "utf8" (one more real JPEG named b"\\xff.JPEG", not valid UTF-8). Returns the path the
    error should name, as it names it."""
    folder = root.resolve() / "val" / WNIDS[-1]
    if kind == "empty":
        for image in folder.iterdir():
            image.unlink()
        return str(folder)
    assert kind == "utf8", kind
    fd = os.open(os.fsencode(folder) + b"/\xff.JPEG", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with os.fdopen(fd, "wb") as f:
        f.write((folder / f"{WNIDS[-1]}_0.JPEG").read_bytes())
    return f"{folder}/\\xff.JPEG"
