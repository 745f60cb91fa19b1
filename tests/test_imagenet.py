"""ImageNet path: index a tiny ImageFolder of real JPEGs, load it through timm's transforms."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image

from mimetic.data import DatasetUnavailable
from mimetic.data.imagenet import index, loader, transform

WNIDS = ["n01440764", "n01443537", "n01484850"]
COLORS = [(220, 20, 20), (20, 220, 20), (20, 20, 220)]


def image_folder(root: Path, train: int = 4, val: int = 2) -> Path:
    """train/<wnid>/*.JPEG and val/<wnid>/*.JPEG: solid colours per class, ImageNet-like aspect ratios."""
    for split, n in (("train", train), ("val", val)):
        for wnid, color in zip(WNIDS, COLORS):
            (root / split / wnid).mkdir(parents=True)
            for k in range(n):
                size = (50 + 10 * k, 40 + 5 * k)
                Image.new("RGB", size, color).save(root / split / wnid / f"{wnid}_{k}.JPEG", quality=95)
    (root / "train" / WNIDS[0] / "notes.txt").write_text("not an image")  # skipped by extension
    return root


def test_index_subset_and_labels(tmp_path):
    root = image_folder(tmp_path / "imagenet")
    meta = index(root, tmp_path / "index", image_size=32, train_per_class=3)
    assert meta["classes"] == WNIDS and meta["train"] == 9 and meta["val"] == 6 and meta["image_size"] == 32
    with open(tmp_path / "index/train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["label"]) for r in rows] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(Path(r["path"]).parent.name == WNIDS[int(r["label"])] for r in rows)
    assert [Path(r["path"]).name for r in rows[:3]] == [f"{WNIDS[0]}_{k}.JPEG" for k in range(3)]  # first N, sorted


@pytest.mark.parametrize("style", ["resnet", "deit"])
def test_loader_batches(tmp_path, style):
    index(image_folder(tmp_path / "imagenet"), tmp_path / "index", image_size=32)
    train = loader("train", style=style, batch_size=4, workers=1, index_dir=tmp_path / "index")
    batches = list(train)
    assert len(batches) == 3  # 12 images, the partial batch dropped
    x, y = batches[0]
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    val = loader("val", style=style, batch_size=6, workers=0, index_dir=tmp_path / "index", image_size=24)
    (x, y), = list(val)
    assert x.shape == (6, 3, 24, 24) and y.tolist() == [0, 0, 1, 1, 2, 2]
    # Evaluation is deterministic and keeps each class's colour: the dominant channel is the label.
    assert x.mean(dim=(2, 3)).argmax(1).tolist() == y.tolist()


def test_resnet_style_is_crop_and_flip_only():
    names = [type(t).__name__ for t in transform("resnet", "train", 224).transforms]
    assert names[:2] == ["RandomResizedCropAndInterpolation", "RandomHorizontalFlip"]
    assert "ColorJitter" not in names and "RandAugment" not in names and "RandomErasing" not in names
    deit = [type(t).__name__ for t in transform("deit", "train", 224).transforms]
    assert "RandAugment" in deit and "RandomErasing" in deit
    evaluation = transform("resnet", "val", 224).transforms
    assert evaluation[0].size == 256 and evaluation[1].size == (224, 224)  # resize 256, centre crop 224


def test_missing_folder_names_the_key(tmp_path):
    with pytest.raises(DatasetUnavailable, match=r"data\.imagenet\.root"):
        index(None, tmp_path / "index")
    with pytest.raises(DatasetUnavailable, match=str(tmp_path / "nowhere" / "train")):
        index(tmp_path / "nowhere", tmp_path / "index")
    with pytest.raises(DatasetUnavailable, match="meta.json"):
        loader("train", index_dir=tmp_path / "index")
