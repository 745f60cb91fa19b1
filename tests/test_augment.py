"""Device augmentations: exactly the transformations claimed, dtypes kept, deterministic per seed."""

from __future__ import annotations

import numpy as np
import pytest
import timm.data.auto_augment as aa
import torch
import torch.nn.functional as F
from PIL import Image

from mimetic.data import load_dataset
from mimetic.data.augment import _OPS, RandAugment, _op, mix, random_crop, random_flip
from mimetic.inputs import MemoryInputs
from mimetic.recipe import TrainConfig


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 32, size: int = 16, channels: int = 3, smooth: bool = False) -> torch.Tensor:
    g = gen(123)
    if smooth:  # natural-image-like, so resampling differences stay small
        x = torch.rand(n, channels, size // 4, size // 4, generator=g) * 255
        return F.interpolate(x, size=size, mode="bilinear").round().to(torch.uint8)
    return torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)


def test_random_crop_is_a_window_of_the_zero_padded_image():
    x, pad = images(), 2
    out = random_crop(x, pad, gen())
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = F.pad(x, (pad,) * 4)
    h, w = x.shape[-2:]
    offsets = set()
    for i in range(len(x)):
        match = [(a, b) for a in range(2 * pad + 1) for b in range(2 * pad + 1)
                 if torch.equal(out[i], padded[i, :, a:a + h, b:b + w])]
        assert match, f"image {i} is no crop of its padded input"
        offsets.add(match[0])
    assert len(offsets) > 5  # offsets vary across the batch
    assert torch.equal(random_crop(x, 0, gen()), x)


def test_random_flip_flips_exactly_some_images():
    x = images()
    out = random_flip(x, gen())
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x)]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    mask = torch.tensor(flipped)
    assert torch.equal(out[mask], x[mask].flip(-1))


def _timm_op(name: str, img: Image.Image, level: float, increasing: bool) -> Image.Image:
    """timm's own PIL op and magnitude mapping (bilinear, fill 128; sign fixed by the caller)."""
    key = name + "Increasing" if increasing and name + "Increasing" in aa.NAME_TO_OP else name
    level_fn = aa.LEVEL_TO_ARG[key]
    args = level_fn(level, {}) if level_fn else ()
    return aa.NAME_TO_OP[key](img, *args, fillcolor=(128, 128, 128), resample=Image.BILINEAR)


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("increasing", [True, False])
@pytest.mark.parametrize("name", _OPS)
def test_randaugment_ops_match_timm_pil_ops(name, increasing, sign, monkeypatch):
    monkeypatch.setattr(aa, "_randomly_negate", lambda v: sign * v)  # fix timm's random sign
    x = images(4, 32, smooth=True)
    level = 9.0
    ours = _op(name, x, torch.full((4,), level), torch.full((4,), sign), torch.full((3,), 128.0), increasing)
    assert ours.dtype == torch.uint8 and ours.shape == x.shape
    pil = [Image.fromarray(i.permute(1, 2, 0).numpy()) for i in x]
    ref = torch.stack([torch.from_numpy(np.array(_timm_op(name, p, level, increasing))).permute(2, 0, 1) for p in pil])
    assert (ours.int() - ref.int()).abs().max() <= 1, name


def test_randaugment_parse_and_apply():
    ra = RandAugment.parse("rand-m9-mstd0.5-inc1")
    assert ra == RandAugment(magnitude=9, num_layers=2, magnitude_std=0.5, increasing=True, prob=0.5)
    assert RandAugment.parse("rand-m7-n3-mstd101").magnitude_std == float("inf")
    for bad in ("augmix-m5", "rand-m9-q3", "rand-mx"):
        with pytest.raises(ValueError, match="randaugment"):
            RandAugment.parse(bad)
    x = images(64)
    out = ra(x, gen(), torch.full((3,), 120.0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    changed = (out != x).flatten(1).any(1)
    assert 0 < changed.sum() < len(x)  # p = 0.5 per op: some images untouched, most changed
    assert torch.equal(ra(x, gen(), torch.full((3,), 120.0)), out)  # deterministic per generator
    assert torch.equal(RandAugment(prob=0.0)(x, gen(), torch.zeros(3)), x)
    one_channel = images(8, channels=1)
    assert ra(one_channel, gen(), torch.zeros(1)).shape == one_channel.shape


@pytest.mark.parametrize("mixup,cutmix", [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_mix_targets_sum_to_one_and_match_the_images(mixup, cutmix):
    x, y = images(16).float(), torch.arange(16) % 10
    for seed in range(4):
        out, t = mix(x, y, 10, mixup, cutmix, gen(seed))
        assert out.shape == x.shape and t.shape == (16, 10)
        assert torch.allclose(t.sum(1), torch.ones(16))
        lam = float(t[0, y[0]]) if y[0] != y[-1] else None
        if lam is None:
            continue
        blended = torch.allclose(out, x * lam + x.flip(0) * (1 - lam), atol=1e-4)
        from_self = (out == x).all(1)  # per pixel: cutmix pastes whole pixels from the reversed batch
        pasted = (out == x.flip(0)).all(1)
        is_cutmix = bool((from_self | pasted).all()) and not blended
        assert blended or is_cutmix
        if is_cutmix:
            own = (from_self & ~pasted)[0].float().mean()
            # lam is the share of pixels kept (x and its partner differ in every pixel here)
            assert abs(float(own) - lam) < 1e-6
        if mixup == 0:
            assert is_cutmix
        if cutmix == 0:
            assert blended


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(dataset="synthetic", model="vit_tiny_patch4_32", batch_size=64, crop_padding=4, **kw).validate()


def test_batches_deterministic_per_seed_with_every_augmentation():
    data = load_dataset("synthetic")
    cfg = _cfg(randaugment="rand-m9-mstd0.5-inc1", mixup=0.8, cutmix=1.0, label_smoothing=0.1)
    first = [b for _, b in zip(range(2), MemoryInputs(cfg, torch.device("cpu"), data=data).epoch(3))]
    again = [b for _, b in zip(range(2), MemoryInputs(cfg, torch.device("cpu"), data=data).epoch(3))]
    other_cfg = _cfg(randaugment="rand-m9-mstd0.5-inc1", mixup=0.8, cutmix=1.0, seed=1)
    other = [b for _, b in zip(range(2), MemoryInputs(other_cfg, torch.device("cpu"), data=data).epoch(3))]
    for (x, t), (x2, t2), (x3, _) in zip(first, again, other):
        assert x.dtype == torch.float32 and x.shape == (64, 3, 32, 32)
        assert t.shape == (64, 10) and torch.allclose(t.sum(1), torch.ones(64))
        assert torch.equal(x, x2) and torch.equal(t, t2)
        assert not torch.equal(x, x3)
    # Soft targets feed the same loss call as hard ones.
    loss = F.cross_entropy(torch.zeros(64, 10), first[0][1], label_smoothing=0.1)
    assert torch.isclose(loss, torch.log(torch.tensor(10.0)))


def test_flip_follows_the_dataset():
    cpu = torch.device("cpu")
    assert not MemoryInputs(TrainConfig(dataset="digits", model="vit_digits"), cpu, data=load_dataset("digits")).flip
    assert MemoryInputs(_cfg(), cpu, data=load_dataset("synthetic")).flip
    assert not MemoryInputs(_cfg(flip="no"), cpu, data=load_dataset("synthetic")).flip


def test_config_rejects_bad_augmentation_options():
    with pytest.raises(ValueError, match="randaugment"):
        _cfg(randaugment="rand-x1")
    with pytest.raises(ValueError, match="mixup"):
        _cfg(mixup=-1.0)
