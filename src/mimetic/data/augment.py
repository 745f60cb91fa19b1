"""Per-batch augmentation on the training device: whole batches, no per-image Python loop.

Every random choice comes from an explicit torch.Generator, so a batch's augmentation is
fixed by (seed, epoch, step) and a resumed run sees exactly the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def generator(*key: int) -> torch.Generator:
    """A CPU generator seeded by the integers `key`, e.g. (seed, epoch) or (seed, epoch, step, rank):
    a fixed mixing into one 63-bit seed, the same on every machine ((seed, epoch) gives
    seed * 1_000_003 + epoch)."""
    seed = 0
    for k in key:
        seed = (seed * 1_000_003 + k) % 2**63
    return torch.Generator().manual_seed(seed)


def _rand(shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> Tensor:
    # Draw on the CPU generator, then move: identical numbers on every device.
    return torch.rand(shape, generator=gen).to(device)


def random_crop(x: Tensor, pad: int, gen: torch.Generator) -> Tensor:
    """Zero-pad by `pad` on every side, then crop each image back at a random offset."""
    if pad == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    off = (_rand((n, 2), gen, x.device) * (2 * pad + 1)).long()  # offsets in 0 .. 2*pad
    rows = (off[:, 0, None] + torch.arange(h, device=x.device))  # (n, h)
    cols = (off[:, 1, None] + torch.arange(w, device=x.device))  # (n, w)
    idx = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indexing over (n, h, w) then put channels back in front.
    return padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_flip(x: Tensor, gen: torch.Generator) -> Tensor:
    """Flip each image left-right with probability 1/2."""
    mask = _rand((x.shape[0],), gen, x.device) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


# --- RandAugment on batches ------------------------------------------------------------------
#
# A batched, on-device port of timm's RandAugment (timm.data.auto_augment, PIL ops). Same op
# list, same magnitude -> argument mappings, same per-op probability and magnitude noise,
# same fill (the caller passes the dataset mean, as timm's create_transform does). Given the
# same op and arguments, every op lands within one grey level of timm's PIL op (a test checks
# it). Differences from timm: (1) geometric ops sample bilinearly (timm picks bilinear or
# bicubic at random per call); (2) results are rounded where PIL truncates (the one grey
# level); (3) random draws come from the explicit generator, not Python's `random` and
# NumPy's global state, so they are reproducible per (seed, epoch).

_LEVEL_DENOM = 10.0  # timm: magnitude M is out of 10
_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
        "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


def _col(v: Tensor) -> Tensor:
    return v.view(-1, 1, 1, 1)


def _to_uint8(x: Tensor) -> Tensor:
    return x.round_().clamp_(0, 255).to(torch.uint8)


def _grey(x: Tensor) -> Tensor:
    """PIL's "L" conversion (ITU-R 601-2 luma), one channel, float."""
    if x.shape[1] == 1:
        return x.float()
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    return (x.float() * w).sum(1, keepdim=True)


def _smooth(x: Tensor) -> Tensor:
    """PIL's SMOOTH filter ([[1,1,1],[1,5,1],[1,1,1]] / 13) with the border pixels kept."""
    c = x.shape[1]
    k = torch.ones(3, 3, device=x.device)
    k[1, 1] = 5
    k = (k / 13).expand(c, 1, 3, 3)
    out = x.float().clone()
    out[..., 1:-1, 1:-1] = F.conv2d(x.float(), k, groups=c)
    return out


def _enhance(x: Tensor, degenerate: Tensor, factor: Tensor) -> Tensor:
    """PIL ImageEnhance: blend from the degenerate image (factor 0) through x (factor 1)."""
    return _to_uint8(degenerate + _col(factor) * (x.float() - degenerate))


def _affine(x: Tensor, inverse: Tensor, fill: Tensor) -> Tensor:
    """Per-image affine warp. `inverse` (n, 2, 3) maps output pixel coordinates (pixel centres at
    +0.5, as PIL's Image.transform) to input coordinates; outside pixels take `fill`."""
    n, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device) + 0.5, torch.arange(w, device=x.device) + 0.5,
                            indexing="ij")
    base = torch.stack([xs, ys, torch.ones_like(xs)], -1)  # (h, w, 3)
    src = torch.einsum("nij,hwj->nhwi", inverse, base)  # (n, h, w, 2) in pixels
    grid = src / torch.tensor([w, h], device=x.device) * 2 - 1  # align_corners=False convention
    # As PIL: a pixel whose source point falls outside the image takes the fill; inside, the
    # bilinear neighbours are clamped to the edge.
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    inside = ((src >= 0) & (src < torch.tensor([w, h], device=x.device))).all(-1)[:, None]
    return _to_uint8(torch.where(inside, out, fill.view(1, -1, 1, 1)))


def _matrix(n: int, device: torch.device, **entries: Tensor) -> Tensor:
    m = torch.zeros(n, 2, 3, device=device)
    m[:, 0, 0] = m[:, 1, 1] = 1
    for key, value in entries.items():
        m[:, int(key[1]), int(key[2])] = value
    return m


def _rotate(x: Tensor, degrees: Tensor, fill: Tensor) -> Tensor:
    """PIL Image.rotate: counter-clockwise about the image centre."""
    a = torch.deg2rad(-degrees)
    cos, sin = torch.cos(a), torch.sin(a)
    h, w = x.shape[-2:]
    cx, cy = w / 2, h / 2
    m = _matrix(len(x), x.device, m00=cos, m01=sin, m10=-sin, m11=cos,
                m02=cx - cos * cx - sin * cy, m12=cy + sin * cx - cos * cy)
    return _affine(x, m, fill)


def _op(name: str, x: Tensor, level: Tensor, sign: Tensor, fill: Tensor, increasing: bool) -> Tensor:
    """Apply op `name` to uint8 images x with per-image magnitudes `level` in [0, 10] and
    signs (+1/-1) for the ops timm randomly negates."""
    frac = level / _LEVEL_DENOM
    n, h, w = len(x), x.shape[-2], x.shape[-1]
    if name in ("AutoContrast", "Equalize"):
        import torchvision.transforms.v2.functional as TF  # here: importing torchvision takes seconds

        return TF.autocontrast(x) if name == "AutoContrast" else TF.equalize(x)
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
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        factor = (1 + sign * frac * 0.9).clamp(min=0.1) if increasing else frac * 1.8 + 0.1
        degenerate = {
            "Color": lambda: _grey(x).expand_as(x),
            "Contrast": lambda: _col(_grey(x).mean(dim=(1, 2, 3)).add(0.5).floor()),
            "Brightness": lambda: torch.zeros((), device=x.device),
            "Sharpness": lambda: _smooth(x),
        }[name]()
        return _enhance(x, degenerate, factor)
    if name == "Rotate":
        return _rotate(x, sign * frac * 30, fill)
    if name == "ShearX":
        return _affine(x, _matrix(n, x.device, m01=sign * frac * 0.3), fill)
    if name == "ShearY":
        return _affine(x, _matrix(n, x.device, m10=sign * frac * 0.3), fill)
    if name == "TranslateXRel":
        return _affine(x, _matrix(n, x.device, m02=sign * frac * 0.45 * w), fill)
    if name == "TranslateYRel":
        return _affine(x, _matrix(n, x.device, m12=sign * frac * 0.45 * h), fill)
    raise ValueError(f"unknown RandAugment op {name!r}")


@dataclass(frozen=True)
class RandAugment:
    """timm's RandAugment policy, applied to a whole uint8 batch on its device.

    Per image: `num_layers` ops drawn uniformly (with replacement) from the 15 of timm's
    `_RAND_TRANSFORMS` (or `_RAND_INCREASING_TRANSFORMS` when `increasing`), each applied with
    probability `prob` at magnitude N(magnitude, magnitude_std) clipped to [0, 10].
    """

    magnitude: float = 10.0
    num_layers: int = 2
    magnitude_std: float = 0.0
    increasing: bool = False
    prob: float = 0.5

    @classmethod
    def parse(cls, spec: str) -> "RandAugment":
        """timm's config string, e.g. "rand-m9-mstd0.5-inc1" (keys m, n, mstd, inc, p)."""
        parts = spec.split("-")
        if parts[0] != "rand":
            raise ValueError(f"randaugment={spec!r}: must start with 'rand-' "
                             "(timm's syntax, e.g. rand-m9-mstd0.5-inc1)")
        kw: dict[str, Any] = {}
        keys = {"mstd": ("magnitude_std", float), "m": ("magnitude", float), "n": ("num_layers", int),
                "inc": ("increasing", lambda v: bool(int(v))), "p": ("prob", float)}
        for part in parts[1:]:
            key = next((k for k in keys if part.startswith(k) and part[len(k):][:1].isdigit()), None)
            if key is None:
                raise ValueError(f"randaugment={spec!r}: unsupported part {part!r}; supported: {list(keys)}")
            field_name, convert = keys[key]
            kw[field_name] = convert(part[len(key):])
        if kw.get("magnitude_std", 0) > 100:  # timm: mstd > 100 means uniform in [0, m]
            kw["magnitude_std"] = float("inf")
        return cls(**kw)

    def __call__(self, x: Tensor, gen: torch.Generator, fill: Tensor) -> Tensor:
        """Augment uint8 (N, C, H, W) images; `fill` (C,) is the colour of uncovered pixels
        (timm uses the dataset mean in 0..255)."""
        n, layers = x.shape[0], self.num_layers
        # All draws on the CPU generator: the same numbers on every device, and the per-op
        # index lists below need no device synchronisation.
        choice = torch.randint(len(_OPS), (n, layers), generator=gen)
        apply = torch.rand((n, layers), generator=gen) < self.prob
        if self.magnitude_std == float("inf"):
            level = torch.rand((n, layers), generator=gen) * self.magnitude
        else:
            level = self.magnitude + self.magnitude_std * torch.randn((n, layers), generator=gen)
        level = level.clamp(0, _LEVEL_DENOM).to(x.device)
        sign = torch.where(torch.rand((n, layers), generator=gen) < 0.5, -1.0, 1.0).to(x.device)
        fill = fill.to(x.device, torch.float32)
        x = x.clone()
        for layer in range(layers):
            for k, name in enumerate(_OPS):
                sel = ((choice[:, layer] == k) & apply[:, layer]).nonzero().squeeze(1)
                if len(sel):
                    sel = sel.to(x.device)
                    x[sel] = _op(name, x[sel], level[sel, layer], sign[sel, layer], fill, self.increasing)
        return x


# --- random erasing --------------------------------------------------------------------------

def random_erasing(x: Tensor, prob: float, gen: torch.Generator, *, min_area: float = 0.02,
                   max_area: float = 1 / 3, min_aspect: float = 0.3, attempts: int = 10) -> Tensor:
    """timm's RandomErasing in mode "pixel" (count 1) on a normalized batch: with probability
    `prob`, one box per image, area and aspect ratio drawn as timm does (up to `attempts` tries
    for a box that fits), filled with standard normal noise."""
    n, _, h, w = x.shape
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
    rows, cols = torch.arange(h), torch.arange(w)
    inside = ((rows >= top[:, None]) & (rows < (top + bh)[:, None]))[:, :, None] & \
             ((cols >= left[:, None]) & (cols < (left + bw)[:, None]))[:, None, :]
    mask = (inside & erase[:, None, None])[:, None].to(x.device)
    # The noise is drawn on the batch's device (a CPU draw of an ImageNet batch would take
    # longer than the step), from a generator seeded by ours.
    noise_gen = torch.Generator(device=x.device).manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
    noise = torch.randn(x.shape, generator=noise_gen, device=x.device, dtype=x.dtype)
    return torch.where(mask, noise, x)


# --- mixup / cutmix --------------------------------------------------------------------------

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


def mix(x: Tensor, y: Tensor, num_classes: int, mixup: float, cutmix: float, gen: torch.Generator
        ) -> tuple[Tensor, Tensor]:
    """timm's Mixup in "batch" mode: one lambda for the batch, each image mixed with the batch
    reversed; with both alphas > 0, cutmix or mixup with probability 1/2 each. Cutmix's lambda
    is corrected to the box actually pasted. Returns the images and soft targets (N, classes)
    that sum to one (label smoothing is left to the loss)."""
    use_cutmix = cutmix > 0 and (mixup <= 0 or float(torch.rand((), generator=gen)) < 0.5)
    lam = _beta(cutmix if use_cutmix else mixup, gen)
    if use_cutmix:
        h, w = x.shape[-2:]
        y0, y1, x0, x1 = _cutmix_box(h, w, lam, gen)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x.flip(0)[..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        x = x * lam + x.flip(0) * (1 - lam)
    one_hot = F.one_hot(y, num_classes).float()
    return x, one_hot * lam + one_hot.flip(0) * (1 - lam)
