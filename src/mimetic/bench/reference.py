"""The reference for `mimetic bench`: the training loop a timm user writes.

A torch DataLoader with workers over the run's uint8 images, PIL transforms per image (random
crop with the recipe's padding, flip, timm's `rand_augment_transform` with the same spec,
ToTensor, Normalize; timm's RandomErasing and Mixup when the recipe has them), `torch.autocast`
bf16 on CUDA, the same model (`build_model`) in eager mode with timm's default attention (SDPA),
timm's AdamW with the run's settings but not fused (torch's default implementation, what
`create_optimizer_v2` gives unless asked), the same scheduler and clipping.

Pillow >= 13 and timm's PIL RandAugment: PosterizeIncreasing at magnitude 10 asks for 0 bits,
and Pillow 13's ImageOps.posterize raises `ValueError: bits must be between or equal to 1 and 8`
(with rand-m9-mstd0.5-inc1, about 1 image in 650: 2 ops x 1/15 x p 0.5 x P(N(9, 0.5) >= 10)).
`CountedPosterize` catches exactly that and returns the 0-bit result, a black image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mimetic.bench._timing import peak_memory, reset_memory, summarize, timed
from mimetic.bench.options import Options
from mimetic.train.models import build_model
from mimetic.train.recipe import TrainConfig


class CountedPosterize:
    """timm's posterize op, made to survive Pillow >= 13 at 0 bits.

    Pillow 13's ImageOps.posterize raises `ValueError: bits must be between or equal to 1 and
    8` for 0 bits, which timm's PosterizeIncreasing asks for at magnitude 10. Exactly that case
    is caught; it returns the image with 0 bits kept, all black: what Pillow < 13 returned, what
    timm's op means, and what the project's RandAugment computes. Counts are per process.
    """

    def __init__(self) -> None:
        self.zero_bits = 0
        self.errors_caught = 0

    def __call__(self, img: Any, bits_to_keep: int, **kwargs: Any) -> Any:
        from timm.data import auto_augment

        if bits_to_keep <= 0:
            self.zero_bits += 1
        try:
            return auto_augment.posterize(img, bits_to_keep, **kwargs)
        except ValueError as e:
            if bits_to_keep != 0 or "bits must be between" not in str(e):
                raise
            self.errors_caught += 1
            return img.point(lambda _: 0)


def reference_transform(cfg: TrainConfig, size: int, mean: torch.Tensor, std: torch.Tensor, flip: bool,
                        posterize: CountedPosterize) -> Callable:
    """The recipe's augmentation as a timm user composes it: PIL ops per image in CPU workers."""
    from timm.data import rand_augment_transform
    from timm.data.random_erasing import RandomErasing
    from torchvision import transforms as T

    ops: list[Callable] = []
    if cfg.crop_padding:
        ops.append(T.RandomCrop(size, padding=cfg.crop_padding))
    if flip:
        ops.append(T.RandomHorizontalFlip())
    if cfg.randaugment:
        # timm's create_transform hparams: translate constant and the fill colour (dataset mean)
        fill = tuple(min(255, round(255 * v)) for v in mean.tolist())
        ra = rand_augment_transform(cfg.randaugment, {"translate_const": int(size * 0.45), "img_mean": fill})
        for op in ra.ops:
            if op.name.startswith("Posterize"):
                op.aug_fn = posterize
        ops.append(ra)
    ops += [T.ToTensor(), T.Normalize(mean.tolist(), std.tolist())]
    if cfg.random_erasing:
        ops.append(RandomErasing(cfg.random_erasing, mode="pixel", device="cpu"))
    return T.Compose(ops)


class ReferenceImages(torch.utils.data.Dataset):
    """uint8 (N, C, H, W) images as PIL images through `transform`; each item also carries how
    many 0-bit posterizations (and caught errors) its transform made."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: Callable, posterize: CountedPosterize):
        self.x = x.permute(0, 2, 3, 1).contiguous().numpy()  # HWC, as PIL wants
        self.y, self.transform, self.posterize = y, transform, posterize

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        from PIL import Image

        arr = self.x[i]
        img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
        zero, caught = self.posterize.zero_bits, self.posterize.errors_caught
        out = self.transform(img)
        return out, self.y[i], self.posterize.zero_bits - zero, self.posterize.errors_caught - caught


def _seed_numpy(worker: int) -> None:
    # timm's PIL RandAugment draws its ops from NumPy's global RNG, which DataLoader does not
    # seed per worker: without this, forked workers would draw the same ops (timm's loader does it too).
    import numpy as np

    np.random.seed(torch.initial_seed() % 2**32)


def reference(cfg: TrainConfig, opts: Options, device: torch.device, data: Any, flops: int, peak: float
              ) -> dict[str, Any]:
    """The usual loop on the same images, model and optimizer settings (module docstring)."""
    from timm.data import Mixup

    from mimetic.train.inputs import default_workers
    from mimetic.train.loop import build_optimizer, build_scheduler

    mean, std = data.stats()
    flip = cfg.flips(data.flip)
    posterize = CountedPosterize()
    dataset = ReferenceImages(data.train_x, data.train_y,
                              reference_transform(cfg, data.image_size, mean, std, flip, posterize), posterize)
    workers = opts.workers if opts.workers is not None else default_workers()
    batch_size = min(cfg.batch_size, len(dataset))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, pin_memory=device.type == "cuda",
                                         persistent_workers=workers > 0, worker_init_fn=_seed_numpy)
    mixup = (Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, num_classes=data.num_classes)
             if cfg.mixup > 0 or cfg.cutmix > 0 else None)
    model = build_model(cfg, num_classes=data.num_classes, in_chans=data.channels).to(device)  # timm's attention
    optimizer = build_optimizer(cfg, model, device, fused=False)  # timm AdamW, not fused: torch's default
    scheduler = build_scheduler(cfg, optimizer, len(loader))
    counts = {"images": 0, "zero": 0, "caught": 0}
    updates = 0

    def batches() -> Iterator:
        while True:
            yield from loader

    stream = batches()

    def step() -> int:
        nonlocal updates
        x, y, zero, caught = next(stream)
        counts["images"] += len(y)
        counts["zero"] += int(zero.sum())
        counts["caught"] += int(caught.sum())
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if mixup is not None:
            x, y = mixup(x, y)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        loss.backward()
        if cfg.clip_grad > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        optimizer.step()
        updates += 1
        scheduler.step_update(num_updates=updates)
        return len(y)

    model.train()
    reset_memory(device)
    result = summarize(timed(step, device, opts), flops, peak)
    memory, kind = peak_memory(device)
    result.update(peak_memory_gib=memory, memory=kind, workers=workers,
                  optimizer="timm create_optimizer_v2 adamw, not fused (torch's default implementation)",
                  compile="off (eager)", images_augmented=counts["images"], posterize_zero_bits=counts["zero"],
                  posterize_errors_caught=counts["caught"])
    return result
