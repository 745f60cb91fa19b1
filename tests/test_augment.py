"""Device augmentations: exactly the transformations claimed, dtypes kept, deterministic per seed."""

from __future__ import annotations

import numpy as np
import pytest
import timm.data.auto_augment as aa
import torch
import torch.nn.functional as F
from PIL import Image

from mimetic.data import load_dataset
from mimetic.train.augment import (_OPS, Draws, RandAugment, _op, crop_flip, erase, erasing_bank, mix, pack,
                                  plan_crop_flip, plan_erasing, plan_mix, unpack)
from mimetic.data.builtin import load_synthetic
from mimetic.train.distributed import Dist
from mimetic.bench.flops import DeviceWork
from mimetic.train.inputs import MemoryInputs
from mimetic.train.prefetch import prefetch
from mimetic.train.recipe import TrainConfig


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 32, size: int = 16, channels: int = 3, smooth: bool = False) -> torch.Tensor:
    g = gen(123)
    if smooth:  # natural-image-like, so resampling differences stay small
        x = torch.rand(n, channels, size // 4, size // 4, generator=g) * 255
        return F.interpolate(x, size=size, mode="bilinear").round().to(torch.uint8)
    return torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)


def planned(plan, n: int, seed: int = 0):
    """A plan of n images (the whole batch) and its tensors."""
    d = Draws()
    plan(d, gen(seed), n, slice(None))
    return d, d.to(torch.device("cpu"))


def test_crop_is_a_window_of_the_zero_padded_image_flipped_where_drawn():
    x, pad = images(), 2
    d, t = planned(lambda d, g, n, s: plan_crop_flip(d, g, n, s, pad, True), len(x))
    out = crop_flip(x, pad, t)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = F.pad(x, (pad,) * 4)
    h, w = x.shape[-2:]
    for i in range(len(x)):
        a, b = t["crop"][i].tolist()
        window = padded[i, :, a:a + h, b:b + w]
        assert torch.equal(out[i], window.flip(-1) if t["flip"][i] else window), i
    assert len({tuple(o) for o in t["crop"].tolist()}) > 5 and 0 < int(t["flip"].sum()) < len(x)
    assert crop_flip(x, 0, {}) is x


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


@pytest.mark.parametrize("increasing", [True, False])
def test_grouped_randaugment_is_each_images_ops_in_turn(increasing):
    """The batch path (images sorted by op, lookup tables, one warp for all geometric ops) gives
    exactly the pixels of applying each image's drawn ops one by one."""
    ra = RandAugment(magnitude=9, magnitude_std=0.5, increasing=increasing, num_layers=3, prob=0.8)
    x, fill = images(96, smooth=True), torch.tensor([120.0, 110.0, 100.0])
    out = ra(x, gen(5), fill)
    choice, applied, level, sign = ra.draw(gen(5), len(x))
    assert len(set(choice[applied].tolist())) == len(_OPS)  # every op took part
    for i in range(len(x)):
        img = x[i:i + 1]
        for layer in range(ra.num_layers):
            if applied[i, layer]:
                img = _op(_OPS[choice[i, layer]], img, level[i, layer:layer + 1], sign[i, layer:layer + 1], fill,
                          increasing)
        assert torch.equal(out[i], img[0]), i


def test_the_plan_travels_in_one_buffer():
    tensors = {"a": torch.arange(5), "b": torch.rand(3, 2), "c": torch.tensor([True, False, True]),
               "d": torch.empty(0, 4), "e": torch.tensor(7, dtype=torch.uint8)}
    buffer, layout = pack(tensors)
    assert buffer.dtype == torch.uint8 and buffer.dim() == 1
    back = unpack(buffer.clone(), layout)
    assert list(back) == list(tensors)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t), name


@pytest.mark.parametrize("batch", [64, 512])
def test_a_step_of_the_in_memory_pipeline_asks_one_copy_and_a_few_hundred_kernels(batch):
    """The device faked as `meta`: the counts are what a GPU would be asked to do, and any host
    synchronization (reading a device value) would fail. CIFAR's full recipe: RandAugment m9,
    crop pad 4, flip, mixup and cutmix (and erasing, which the DeiT recipe adds)."""
    for extra in ({}, {"random_erasing": 0.25}):
        cfg = TrainConfig(dataset="synthetic", model="vit_tiny_patch4_32", batch_size=batch, crop_padding=4,
                          randaugment="rand-m9-mstd0.5-inc1", mixup=0.8, cutmix=1.0, **extra).validate()
        inputs = MemoryInputs(cfg, torch.device("meta"), data=load_synthetic(n_train=4 * batch, n_test=8), prefetch=0)
        steps = inputs.epoch(0)
        next(steps)  # the first step makes the per-device constants
        for _ in range(2):
            with DeviceWork() as work:
                x, y = next(steps)
            assert x.shape == (batch, 3, 32, 32) and y.shape == (batch, 10)
            assert work.copies <= 2, work.ops
            assert work.kernels <= 300, work.ops


def test_erasing_fills_one_box_per_erased_image_with_bank_noise():
    n, h, w = 64, 16, 16
    x = torch.zeros(n, 3, h, w)
    bank = erasing_bank(3, (3, h, w))
    d, t = planned(lambda d, g, n_, s: plan_erasing(d, g, n_, s, h, w, 0.5), n)
    out = erase(x.clone(), t, bank)
    erased = t["erase.idx"].tolist()
    assert 15 < len(erased) < 50
    for i in range(n):
        changed = (out[i] != 0).any(0)
        if i not in erased:
            assert not changed.any()
            continue
        top, bottom, left, right = t["erase.box"][erased.index(i)].tolist()
        box = torch.zeros(h, w, dtype=torch.bool)
        box[top:bottom, left:right] = True
        assert torch.equal(changed, box)
        k, dy, dx = t["erase.noise"][erased.index(i)].tolist()
        noise = bank[k].roll((-dy, -dx), dims=(1, 2))
        assert torch.equal(out[i][:, box], noise[:, box])


@pytest.mark.parametrize("mixup,cutmix", [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_mix_pairs_neighbours_and_targets_match_the_images(mixup, cutmix):
    x, y = images(17).float(), torch.arange(17) % 10
    eye = torch.eye(10)
    pair = [1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14, 16]  # the odd one out is its own partner
    kinds = set()
    for seed in range(6):
        d = Draws()
        plan_mix(d, gen(seed), 16, 16, mixup, cutmix)
        lam, box = d.values["mix"]
        out, t = mix(x, eye[y], d)
        assert out.shape == x.shape and t.shape == (17, 10)
        assert torch.allclose(t.sum(1), torch.ones(17))
        assert torch.allclose(t, eye[y] * lam + eye[y[pair]] * (1 - lam))
        if box is None:
            assert mixup > 0 and torch.allclose(out, x * lam + x[pair] * (1 - lam), atol=1e-4)
        else:
            assert cutmix > 0
            y0, y1, x0, x1 = box
            expected = x.clone()
            expected[..., y0:y1, x0:x1] = x[pair][..., y0:y1, x0:x1]
            assert torch.equal(out, expected)
            assert lam == pytest.approx(1 - (y1 - y0) * (x1 - x0) / 256)  # the share of pixels kept
        kinds.add(box is None)
    assert len(kinds) == (2 if mixup and cutmix else 1)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"dataset": "synthetic", "model": "vit_tiny_patch4_32", "batch_size": 64, "crop_padding": 4,
                          **kw}).validate()


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


def test_prefetched_batches_are_the_batches_made_in_place():
    cfg = _cfg(randaugment="rand-m9-mstd0.5-inc1", mixup=0.8, cutmix=1.0, random_erasing=0.25)
    data = load_dataset("synthetic")
    cpu = torch.device("cpu")
    ahead = list(MemoryInputs(cfg, cpu, data=data).epoch(2))
    inline = list(MemoryInputs(cfg, cpu, data=data, prefetch=0).epoch(2))
    assert len(ahead) == len(inline) == 2048 // 64
    for (x, t), (x2, t2) in zip(ahead, inline):
        assert torch.equal(x, x2) and torch.equal(t, t2)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(MemoryInputs(cfg, cpu, data=data).test(),
                                                         MemoryInputs(cfg, cpu, data=data, prefetch=0).test()))
    tail = list(MemoryInputs(cfg, cpu, data=data).epoch(2, start=30))  # a resumed epoch, from step 30
    assert all(torch.equal(a[0], b[0]) for a, b in zip(tail, inline[30:], strict=True))


def test_an_error_while_prefetching_is_raised_at_its_batch():
    def broken():
        yield 1
        raise FloatingPointError("batch 2")

    got = []
    with pytest.raises(FloatingPointError, match="batch 2"):
        for b in prefetch(broken, torch.device("cpu")):
            got.append(b)
    assert got == [1]


def test_each_rank_augments_its_shard_exactly_as_one_process_would():
    """Draws of the global batch, work on the shard: every augmentation, RandAugment's grouping,
    erasing and the neighbour pairs of mixup/cutmix included."""
    cfg = _cfg(randaugment="rand-m9-mstd0.5-inc1", mixup=0.8, cutmix=1.0, random_erasing=0.25)
    data, cpu = load_dataset("synthetic"), torch.device("cpu")
    whole = [b for _, b in zip(range(3), MemoryInputs(cfg, cpu, data=data).epoch(1))]
    for world in (2, 4):
        shards = [[b for _, b in zip(range(3), MemoryInputs(cfg, cpu, Dist(r, world), data=data).epoch(1))]
                  for r in range(world)]
        for step, (x, t) in enumerate(whole):
            assert torch.equal(torch.cat([s[step][0] for s in shards]), x)
            assert torch.equal(torch.cat([s[step][1] for s in shards]), t)
    with pytest.raises(ValueError, match="divisible by 6"):
        MemoryInputs(_cfg(batch_size=63, mixup=0.8), cpu, Dist(0, 3), data=data)
