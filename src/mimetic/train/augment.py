"""Per-batch augmentation in two halves: planned on the host, applied on the training device.

`plan` draws every random number of a batch on a CPU generator seeded by (seed, epoch, step) and
turns the draws into what the device needs: crop offsets, warp matrices, lookup tables, boxes,
the order that groups images by RandAugment op. `apply` runs whole-batch kernels with them. The
tensors of a batch's plan reach the device in one pinned, non-blocking copy (`Draws.to`), so:

- nothing inside a step waits for the host (no per-op index lists moved one by one, no
  `torch.tensor(..., device=)` per step: constants are made once per device, `constant`);
- the CPU and a GPU see the same random numbers;
- a data-parallel rank draws for the whole global batch and plans its own shard only, so it
  augments exactly the images a single process would give it, and nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mimetic.train._policy import Policy


def generator(*key: int) -> torch.Generator:
    """A CPU generator seeded by the integers `key`, e.g. (seed, epoch) or (seed, epoch, step):
    a fixed mixing into one 63-bit seed, the same on every machine ((seed, epoch) gives
    seed * 1_000_003 + epoch)."""
    seed = 0
    for k in key:
        seed = (seed * 1_000_003 + k) % 2**63
    return torch.Generator().manual_seed(seed)


# --- one copy per batch, constants once per device ----------------------------------------------

_ALIGN = 16  # every part starts at a multiple of the widest element, so it views as its own dtype


@dataclass
class Draws:
    """One batch's plan: `tensors` travel to the device together, `values` (plain numbers: op
    counts, the mixing weight, a box) stay on the host and need no copy at all."""

    tensors: dict[str, Tensor] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def __setitem__(self, name: str, tensor: Tensor) -> None:
        self.tensors[name] = tensor

    def to(self, device: torch.device) -> dict[str, Tensor]:
        """The tensors on `device`: packed into one byte buffer (pinned on CUDA), copied once
        without blocking, and viewed back as their dtypes and shapes there (no kernel)."""
        if device.type == "cpu":
            return dict(self.tensors)
        buffer, layout = pack(self.tensors, pin=device.type == "cuda")
        return unpack(buffer.to(device, non_blocking=True), layout)


Layout = list[tuple[str, int, int, torch.dtype, torch.Size]]


def pack(tensors: dict[str, Tensor], pin: bool = False) -> tuple[Tensor, Layout]:
    """The tensors' bytes in one uint8 buffer, each part aligned; `unpack` reverses it."""
    layout: Layout = []
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        layout.append((name, size, nbytes, t.dtype, t.shape))
        size += -(-nbytes // _ALIGN) * _ALIGN
    buffer = torch.empty(max(size, _ALIGN), dtype=torch.uint8, pin_memory=pin)
    for (_, offset, nbytes, _, _), t in zip(layout, tensors.values()):
        if nbytes:
            buffer[offset : offset + nbytes] = t.contiguous().reshape(-1).view(torch.uint8)
    return buffer, layout


def unpack(buffer: Tensor, layout: Layout) -> dict[str, Tensor]:
    return {name: buffer[offset : offset + nbytes].view(dtype).view(shape)
            for name, offset, nbytes, dtype, shape in layout}


_CONSTANTS: dict[tuple[str, Any], Tensor] = {}


def constant(device: torch.device, key: Any, make: Callable[[], Tensor]) -> Tensor:
    """`make()` (a host tensor) on `device`, made and copied once per (device, key)."""
    k = (str(device), key)
    t = _CONSTANTS.get(k)
    if t is None:
        t = _CONSTANTS[k] = make().to(device)
    return t


def _arange(n: int, device: torch.device, dtype: torch.dtype = torch.int64) -> Tensor:
    return constant(device, ("arange", n, dtype), lambda: torch.arange(n, dtype=dtype))


# --- crop and flip ------------------------------------------------------------------------------

def plan_crop_flip(d: Draws, gen: torch.Generator, n: int, shard: slice, pad: int, flip: bool) -> None:
    """Per image: a crop offset in 0 .. 2*pad of the zero-padded image, and a flip (p = 1/2)."""
    if pad:
        d["crop"] = (torch.rand((n, 2), generator=gen) * (2 * pad + 1)).long()[shard]
    if flip:
        d["flip"] = (torch.rand(n, generator=gen) < 0.5)[shard]


def crop_flip(x: Tensor, pad: int, t: dict[str, Tensor]) -> Tensor:
    """Zero-pad by `pad`, crop each image back at its offset, flip it left-right where drawn:
    one gather for the batch (the flip is a reversed column index, not a second pass)."""
    offsets, flips = t.get("crop"), t.get("flip")
    if offsets is None and flips is None:
        return x
    n, c, h, w = x.shape
    rows, cols = _arange(h, x.device).expand(n, h), _arange(w, x.device).expand(n, w)
    if offsets is not None:
        x = F.pad(x, (pad, pad, pad, pad))
        rows, cols = rows + offsets[:, :1], cols + offsets[:, 1:]
    if flips is not None:
        cols = torch.where(flips[:, None], cols.flip(1), cols)
    plane = x.shape[-1] * x.shape[-2]
    index = (rows * x.shape[-1])[:, :, None] + cols[:, None, :]  # (n, h, w) into each (padded) channel plane
    return x.reshape(n, c, plane).gather(2, index.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)


# --- RandAugment on batches ---------------------------------------------------------------------
#
# A batched, on-device port of timm's RandAugment (timm.data.auto_augment, PIL ops). Same op
# list, same magnitude -> argument mappings, same per-op probability and magnitude noise, same
# fill (the caller passes the dataset mean, as timm's create_transform does). Given the same op
# and arguments, every op lands within one grey level of timm's PIL op (a test checks it).
# Differences from timm: (1) geometric ops sample bilinearly (timm picks bilinear or bicubic at
# random per call); (2) results are rounded where PIL truncates (the one grey level); (3) random
# draws come from the explicit generator, not Python's `random` and NumPy's global state.
#
# How a batch is applied: per layer, the images that an op is applied to are sorted by op, so
# each op works on a contiguous slice whose bounds the host knows (no index list per op, no
# device-to-host round trip). The pointwise ops (Invert, Posterize, Solarize, SolarizeAdd) become
# one lookup table per image, built on the host, and all warps (Rotate, Shear, Translate) one
# matrix per image, so each of the two families is a single kernel pass whatever its ops.

_LEVEL_DENOM = 10.0  # timm: magnitude M is out of 10
_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
        "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
_LUT = ("Invert", "Posterize", "Solarize", "SolarizeAdd")
_WARP = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
_ENHANCE = ("Color", "Contrast", "Brightness", "Sharpness")
_ORDER = (*_LUT, *_WARP, *_ENHANCE, "AutoContrast", "Equalize")  # the sorted order of a layer's slices
_RANK = torch.tensor([_ORDER.index(name) for name in _OPS])


def _col(v: Tensor) -> Tensor:
    return v.view(-1, 1, 1, 1)


def _to_uint8(x: Tensor) -> Tensor:
    return x.round_().clamp_(0, 255).to(torch.uint8)


def _grey(x: Tensor) -> Tensor:
    """PIL's "L" conversion (ITU-R 601-2 luma), one channel, float."""
    if x.shape[1] == 1:
        return x.float()
    w = constant(x.device, "luma", lambda: torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1))
    return (x.float() * w).sum(1, keepdim=True)


def _smooth(x: Tensor) -> Tensor:
    """PIL's SMOOTH filter ([[1,1,1],[1,5,1],[1,1,1]] / 13) with the border pixels kept."""
    c = x.shape[1]
    k = constant(x.device, ("smooth", c), lambda: (torch.tensor([[1., 1, 1], [1, 5, 1], [1, 1, 1]]) / 13)
                 .expand(c, 1, 3, 3).contiguous())
    xf = x.float()
    out = xf.clone()
    out[..., 1:-1, 1:-1] = F.conv2d(xf, k, groups=c)
    return out


def _degenerate(name: str, x: Tensor) -> Tensor:
    """PIL ImageEnhance's degenerate image of op `name`, which factor 0 blends to."""
    if name == "Color":
        return _grey(x).expand_as(x)
    if name == "Contrast":
        return _col(_grey(x).mean(dim=(1, 2, 3)).add_(0.5).floor_()).expand_as(x)
    if name == "Brightness":
        return constant(x.device, "zero", lambda: torch.zeros(1, 1, 1, 1)).expand_as(x)
    return _smooth(x)


def _enhance_factor(frac: Tensor, sign: Tensor, increasing: bool) -> Tensor:
    return (1 + sign * frac * 0.9).clamp(min=0.1) if increasing else frac * 1.8 + 0.1


def _blend(x: Tensor, degenerate: Tensor, factor: Tensor) -> Tensor:
    """PIL ImageEnhance: blend from the degenerate image (factor 0) through x (factor 1)."""
    return _to_uint8(torch.lerp(degenerate, x.float(), _col(factor)))


def _warp_matrix(name: str, frac: Tensor, sign: Tensor, h: int, w: int) -> Tensor:
    """(n, 2, 3) maps from output to input pixel coordinates, as PIL's Image.transform takes them."""
    m = torch.zeros(len(frac), 2, 3)
    m[:, 0, 0] = m[:, 1, 1] = 1
    if name == "Rotate":  # PIL Image.rotate: counter-clockwise about the image centre
        a = torch.deg2rad(-sign * frac * 30)
        cos, sin = torch.cos(a), torch.sin(a)
        cx, cy = w / 2, h / 2
        m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = cos, sin, cx - cos * cx - sin * cy
        m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = -sin, cos, cy + sin * cx - cos * cy
    elif name == "ShearX":
        m[:, 0, 1] = sign * frac * 0.3
    elif name == "ShearY":
        m[:, 1, 0] = sign * frac * 0.3
    elif name == "TranslateXRel":
        m[:, 0, 2] = sign * frac * 0.45 * w
    elif name == "TranslateYRel":
        m[:, 1, 2] = sign * frac * 0.45 * h
    return m


def _affine(x: Tensor, inverse: Tensor, fill: Tensor) -> Tensor:
    """Per-image affine warp. `inverse` (n, 2, 3) maps output pixel coordinates (pixel centres at
    +0.5, as PIL's Image.transform) to input coordinates; outside pixels take `fill`."""
    _, _, h, w = x.shape
    base = constant(x.device, ("pixel-centres", h, w), lambda: torch.stack(torch.meshgrid(
        torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")[::-1] + (torch.ones(h, w),), -1))
    size = constant(x.device, ("size", h, w), lambda: torch.tensor([float(w), float(h)]))
    to_grid = constant(x.device, ("to-grid", h, w), lambda: torch.tensor([2 / w, 2 / h]))  # align_corners=False
    src = torch.einsum("nij,hwj->nhwi", inverse, base)  # (n, h, w, 2) in pixels
    # As PIL: a pixel whose source point falls outside the image takes the fill; inside, the
    # bilinear neighbours are clamped to the edge.
    grid = src.mul(to_grid).sub_(1)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    inside = ((src >= 0) & (src < size)).all(-1)[:, None]
    return _to_uint8(torch.where(inside, out, fill.view(1, -1, 1, 1)))


def _histogram_op(name: str, x: Tensor) -> Tensor:
    """AutoContrast or Equalize: lookup tables made from each image's own pixels (torchvision's)."""
    import torchvision.transforms.v2.functional as TF  # here: importing torchvision takes seconds

    return TF.autocontrast(x) if name == "AutoContrast" else TF.equalize(x)


def _op(name: str, x: Tensor, level: Tensor, sign: Tensor, fill: Tensor, increasing: bool) -> Tensor:
    """Apply op `name` to uint8 images x with per-image magnitudes `level` in [0, 10] and signs
    (+1/-1) for the ops timm randomly negates: one op on its own, as the tests compare it with
    timm's; a batch takes the grouped path of `RandAugment.apply`, which gives the same pixels."""
    if name in ("AutoContrast", "Equalize"):
        return _histogram_op(name, x)
    frac = level / _LEVEL_DENOM
    if name == "Invert":
        return 255 - x
    if name == "Posterize":  # keep 4 -> 0 (increasing) or 0 -> 4 most significant bits
        bits = (frac * 4).floor().long()
        bits = 4 - bits if increasing else bits
        return x & _col(((255 << (8 - bits)) & 255).to(torch.uint8))
    if name == "Solarize":  # invert pixels >= threshold 256 -> 0 (increasing)
        thresh = (frac * 256).floor().clamp(max=256).long()
        thresh = 256 - thresh if increasing else thresh
        return torch.where(x.long() >= _col(thresh), 255 - x, x)
    if name == "SolarizeAdd":
        add = (frac * 110).floor().clamp(max=128)
        return torch.where(x < 128, _to_uint8(x.float() + _col(add)), x)
    if name in _ENHANCE:
        return _blend(x, _degenerate(name, x), _enhance_factor(frac, sign, increasing).to(x.device))
    if name in _WARP:
        h, w = x.shape[-2:]
        return _affine(x, _warp_matrix(name, frac.cpu(), sign.cpu(), h, w).to(x.device), fill.to(x.device))
    raise ValueError(f"unknown RandAugment op {name!r}")


def _slices(counts: list[int], names: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """(op, start, end) of each op of `names` present in a layer's sorted images."""
    out, start = [], sum(counts[: _ORDER.index(names[0])])
    for name in names:
        n = counts[_ORDER.index(name)]
        if n:
            out.append((name, start, start + n))
        start += n
    return out


@dataclass(frozen=True)
class RandAugment(Policy):
    """timm's RandAugment policy (mimetic.train._policy.Policy: its fields and spec syntax),
    applied to a whole uint8 batch on its device."""

    def draw(self, gen: torch.Generator, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(op index into _OPS, applied, level in [0, 10], sign), each (n, num_layers)."""
        shape = (n, self.num_layers)
        choice = torch.randint(len(_OPS), shape, generator=gen)
        applied = torch.rand(shape, generator=gen) < self.prob
        if self.magnitude_std == float("inf"):
            level = torch.rand(shape, generator=gen) * self.magnitude
        else:
            level = self.magnitude + self.magnitude_std * torch.randn(shape, generator=gen)
        sign = torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0)
        return choice, applied, level.clamp(0, _LEVEL_DENOM), sign

    def plan(self, d: Draws, gen: torch.Generator, n: int, shard: slice, h: int, w: int) -> None:
        """Draw for the global batch of n, plan the shard's images: per layer, the images an op
        applies to sorted by op (`ra<l>.idx`), the ops' counts, and the lookup tables, warp
        matrices and blend factors of those images, in that order."""
        choice, applied, level, sign = (t[shard] for t in self.draw(gen, n))
        for layer in range(self.num_layers):
            key = torch.where(applied[:, layer], _RANK[choice[:, layer]], len(_ORDER))
            order = torch.sort(key, stable=True).indices[: int(applied[:, layer].sum())]
            counts = torch.bincount(key[order], minlength=len(_ORDER)).tolist()
            frac, sgn = level[order, layer] / _LEVEL_DENOM, sign[order, layer]
            d[f"ra{layer}.idx"] = order
            d.values[f"ra{layer}.counts"] = counts
            luts = _slices(counts, _LUT)
            if luts:  # the pointwise ops evaluated on a 0..255 ramp: each image's lookup table
                ramp = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 256)
                d[f"ra{layer}.lut"] = torch.cat([
                    _op(name, ramp.expand(b - a, 1, 1, 256), level[order[a:b], layer], sgn[a:b], torch.zeros(1),
                        self.increasing).reshape(b - a, 256) for name, a, b in luts])
            warps = _slices(counts, _WARP)
            if warps:
                d[f"ra{layer}.warp"] = torch.cat([_warp_matrix(name, frac[a:b], sgn[a:b], h, w)
                                                  for name, a, b in warps])
            enhance = _slices(counts, _ENHANCE)
            if enhance:
                a, b = enhance[0][1], enhance[-1][2]
                d[f"ra{layer}.factor"] = _enhance_factor(frac[a:b], sgn[a:b], self.increasing)

    def apply(self, x: Tensor, d: Draws, t: dict[str, Tensor], fill: Tensor) -> Tensor:
        """Augment uint8 (n, C, H, W) images (in place: x must be the caller's own) with the plan
        `d` (its tensors `t` on x's device); `fill` (C,) on x's device is the colour of uncovered
        pixels (timm uses the dataset mean in 0..255)."""
        for layer in range(self.num_layers):
            counts = d.values[f"ra{layer}.counts"]
            if not sum(counts):
                continue
            idx = t[f"ra{layer}.idx"]
            xs = x[idx]
            parts = []
            luts = _slices(counts, _LUT)
            if luts:
                a, b = luts[0][1], luts[-1][2]
                seg = xs[a:b]
                parts.append(torch.gather(t[f"ra{layer}.lut"], 1, seg.reshape(b - a, -1).long()).view_as(seg))
            warps = _slices(counts, _WARP)
            if warps:
                a, b = warps[0][1], warps[-1][2]
                parts.append(_affine(xs[a:b], t[f"ra{layer}.warp"], fill))
            enhance = _slices(counts, _ENHANCE)
            if enhance:
                a, b = enhance[0][1], enhance[-1][2]
                degenerate = [_degenerate(name, xs[s:e]) for name, s, e in enhance]
                degenerate = degenerate[0] if len(degenerate) == 1 else torch.cat(degenerate)
                parts.append(_blend(xs[a:b], degenerate, t[f"ra{layer}.factor"]))
            for name, a, b in _slices(counts, ("AutoContrast", "Equalize")):
                parts.append(_histogram_op(name, xs[a:b]))
            x.index_copy_(0, idx, parts[0] if len(parts) == 1 else torch.cat(parts))
        return x

    def __call__(self, x: Tensor, gen: torch.Generator, fill: Tensor) -> Tensor:
        """The whole batch x (uint8, N x C x H x W) at once: plan, copy, apply."""
        d = Draws()
        self.plan(d, gen, len(x), slice(None), *x.shape[-2:])
        return self.apply(x.clone(), d, d.to(x.device), fill.to(x.device, torch.float32))


# --- random erasing -----------------------------------------------------------------------------

ERASING_BANK = 16  # noise images per run (see plan_erasing)


def erasing_bank(seed: int, shape: tuple[int, int, int]) -> Tensor:
    """Standard normal noise, (ERASING_BANK, C, H, W), drawn once per run on the CPU."""
    return torch.randn((ERASING_BANK, *shape), generator=generator(seed, 0xE2A5E))


def plan_erasing(d: Draws, gen: torch.Generator, n: int, shard: slice, h: int, w: int, prob: float, *,
                 min_area: float = 0.02, max_area: float = 1 / 3, min_aspect: float = 0.3, attempts: int = 10
                 ) -> None:
    """timm's RandomErasing in mode "pixel" (count 1): with probability `prob`, one box per image,
    area and aspect ratio drawn as timm does (up to `attempts` tries for a box that fits).

    The box's noise: timm draws fresh normal noise per pixel, which for an ImageNet batch is a
    CPU draw longer than the step or a device draw that a data-parallel rank could not split.
    Here each erased image takes a bank image (erasing_bank) at a random cyclic offset, so the
    noise is the same on every device and for every world size."""
    area = h * w * (min_area + (max_area - min_area) * torch.rand((n, attempts), generator=gen))
    log_aspect = torch.rand((n, attempts), generator=gen) * 2 * np.log(1 / min_aspect) + np.log(min_aspect)
    bh = (area * log_aspect.exp()).sqrt().round().long()
    bw = (area / log_aspect.exp()).sqrt().round().long()
    fits = (bh < h) & (bw < w)
    first = fits.float().argmax(1)  # the first box that fits (rows without one are skipped below)
    bh, bw = bh.gather(1, first[:, None])[:, 0], bw.gather(1, first[:, None])[:, 0]
    top = (torch.rand(n, generator=gen) * (h - bh + 1)).long()
    left = (torch.rand(n, generator=gen) * (w - bw + 1)).long()
    erase = (torch.rand(n, generator=gen) < prob) & fits.any(1)
    noise = torch.stack([torch.randint(ERASING_BANK, (n,), generator=gen), torch.randint(h, (n,), generator=gen),
                         torch.randint(w, (n,), generator=gen)], 1)
    mine = erase[shard].nonzero()[:, 0]
    d["erase.idx"] = mine
    d["erase.box"] = torch.stack([top, top + bh, left, left + bw], 1)[shard][mine]
    d["erase.noise"] = noise[shard][mine]


def erase(x: Tensor, t: dict[str, Tensor], bank: Tensor) -> Tensor:
    """Fill each planned box of the normalized batch x (in place) with its bank noise."""
    idx = t["erase.idx"]
    if not len(idx):
        return x
    _, c, h, w = x.shape
    box, (k, dy, dx) = t["erase.box"], t["erase.noise"].unbind(1)
    rows, cols = _arange(h, x.device), _arange(w, x.device)
    inside = (((rows >= box[:, :1]) & (rows < box[:, 1:2]))[:, :, None]
              & ((cols >= box[:, 2:3]) & (cols < box[:, 3:]))[:, None, :])
    noise = bank[k[:, None, None, None], _arange(c, x.device)[None, :, None, None],
                 ((rows + dy[:, None]) % h)[:, None, :, None], ((cols + dx[:, None]) % w)[:, None, None, :]]
    return x.index_copy_(0, idx, torch.where(inside[:, None], noise, x[idx]))


# --- mixup / cutmix -----------------------------------------------------------------------------

def _beta(alpha: float, gen: torch.Generator) -> float:
    # torch's Beta sampler takes no generator: seed NumPy's from ours instead.
    seed = int(torch.randint(2**62, (1,), generator=gen))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def _cutmix_box(h: int, w: int, lam: float, gen: torch.Generator) -> tuple[int, int, int, int]:
    """timm's rand_bbox: a box of area ~(1 - lam) centred uniformly, clipped to the image."""
    cut = np.sqrt(1 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(torch.randint(h, (1,), generator=gen)), int(torch.randint(w, (1,), generator=gen))
    return (int(np.clip(cy - ch // 2, 0, h)), int(np.clip(cy + ch // 2, 0, h)),
            int(np.clip(cx - cw // 2, 0, w)), int(np.clip(cx + cw // 2, 0, w)))


def plan_mix(d: Draws, gen: torch.Generator, h: int, w: int, mixup: float, cutmix: float) -> None:
    """timm's Mixup in "batch" mode: one lambda for the batch; with both alphas > 0, cutmix or
    mixup with probability 1/2 each; cutmix's lambda corrected to the box actually pasted.
    Plain numbers only: the whole plan stays on the host."""
    use_cutmix = cutmix > 0 and (mixup <= 0 or float(torch.rand((), generator=gen)) < 0.5)
    lam = _beta(cutmix if use_cutmix else mixup, gen)
    box = None
    if use_cutmix:
        box = _cutmix_box(h, w, lam, gen)
        y0, y1, x0, x1 = box
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    d.values["mix"] = (lam, box)


def partners(n: int, device: torch.device) -> Tensor:
    """Each image's mixing partner: its neighbour in the batch (0-1, 2-3, ...; an odd last image
    its own). timm pairs each image with the batch reversed; neighbours give the same
    distribution (the batch order is random) and keep both partners in one data-parallel shard."""
    def make() -> Tensor:
        p = torch.arange(n) ^ 1
        p[p >= n] = n - 1
        return p
    return constant(device, ("partners", n), make)


def mix(x: Tensor, targets: Tensor, d: Draws) -> tuple[Tensor, Tensor]:
    """The planned mix of normalized images x and soft targets (N, classes)."""
    lam, box = d.values["mix"]
    pair = partners(len(x), x.device)
    if box is None:
        x = torch.lerp(x[pair], x, lam)
    else:
        y0, y1, x0, x1 = box
        x = x.clone()
        x[..., y0:y1, x0:x1] = x[pair, :, y0:y1, x0:x1]
    return x, torch.lerp(targets[pair], targets, lam)


# --- a run's whole batch augmentation -----------------------------------------------------------

@dataclass
class BatchAugment:
    """What a recipe asks of each batch, in order: crop and flip (in-memory datasets; ImageNet
    crops and flips per image when it decodes), RandAugment on uint8, normalization, random
    erasing, mixup/cutmix (with soft targets). One object per run and device."""

    device: torch.device
    shape: tuple[int, int, int]  # C, H, W of the images it gets
    num_classes: int
    mean: Tensor  # (C,), 0..1
    std: Tensor
    seed: int
    crop_padding: int = 0
    flip: bool = False
    randaugment: RandAugment | None = None
    random_erasing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0

    def __post_init__(self) -> None:
        dev = self.device
        # timm's fill for RandAugment: the dataset mean, in 0..255
        self.fill = (self.mean * 255).round().to(dev)
        self.scale = (1 / (255 * self.std)).view(1, -1, 1, 1).to(dev)
        self.shift = (-self.mean / self.std).view(1, -1, 1, 1).to(dev)
        self.eye = torch.eye(self.num_classes).to(dev)
        self.bank = erasing_bank(self.seed, self.shape).to(dev) if self.random_erasing > 0 else None

    @property
    def mixes(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def plan(self, d: Draws, gen: torch.Generator, n: int, shard: slice) -> None:
        """All draws of a global batch of n, in a fixed order; the shard's part goes into d."""
        _, h, w = self.shape
        plan_crop_flip(d, gen, n, shard, self.crop_padding, self.flip)
        if self.randaugment:
            self.randaugment.plan(d, gen, n, shard, h, w)
        if self.random_erasing > 0:
            plan_erasing(d, gen, n, shard, h, w, self.random_erasing)
        if self.mixes:
            plan_mix(d, gen, h, w, self.mixup, self.cutmix)

    def apply(self, x: Tensor, y: Tensor, d: Draws, t: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """uint8 images x (the caller's own: worked on in place) and labels y -> normalized images
        and hard labels, or soft targets when mixing."""
        x = crop_flip(x, self.crop_padding, t)
        if self.randaugment:
            x = self.randaugment.apply(x, d, t, self.fill)
        x = self.normalize(x)
        if self.bank is not None:
            x = erase(x, t, self.bank)
        if self.mixes:
            return mix(x, self.eye[y], d)
        return x, y

    def normalize(self, x: Tensor) -> Tensor:
        """(x / 255 - mean) / std in one pass."""
        return torch.addcmul(self.shift, x, self.scale)
