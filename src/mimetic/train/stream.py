"""ImageNet streamed into training from the data stage's index (mimetic.data.imagenet).

DataLoader workers read the index's files. Each image's random-resized crop box and flip are
drawn from (seed, epoch, image index) alone: the same for every arm, any worker count and a
resumed run. Two decode paths give the same crops:

- "cpu": the worker decodes with PIL (libjpeg-turbo) and crops/resizes with PIL (antialiased);
- "device": the worker only reads the file's bytes and header; the batch is decoded with nvJPEG
  (torchvision.io.decode_jpeg on the training device) and resampled there (antialiased).
  Files nvJPEG does not take (CMYK JPEGs, a PNG named .JPEG) are decoded by the worker with PIL.

Evaluation: resize to size / crop_pct (256 for 224 at the usual 0.875), centre crop, as timm.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import resource
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode

from mimetic.data import imagenet
from mimetic.data.core import DATA_DIR, INDEX_FILES, DatasetError, DatasetUnavailable
from mimetic.train.augment import Draws, _arange, generator
from mimetic.train.distributed import Dist
from mimetic.train.inputs import Batch, batch_augment, check_mix_shards, default_workers
from mimetic.train.models import image_size
from mimetic.train.prefetch import DEPTH, prefetch
from mimetic.train.recipe import TrainConfig

# torchvision 0.29 marks its decoders deprecated in favour of TorchCodec (>= 0.16). Kept on
# purpose (BENCHMARKS.md, "The decode race, and which JPEG decoder"): its CUDA path is read and
# its stream hazard handled (to_images); TorchCodec's CUDA decoder has the same hazard.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision are deprecated",
                        category=DeprecationWarning)

# timm's IMAGENET_DEFAULT_MEAN / _STD
MEAN = torch.tensor([0.485, 0.456, 0.406])
STD = torch.tensor([0.229, 0.224, 0.225])
# torchvision's RandomResizedCrop defaults, which timm's ResNet and DeiT recipes keep
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


def _open(path: str) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"imagenet: cannot read {path} ({type(e).__name__}: {e}); re-run the data stage "
                           "(it leaves unreadable files out of the index) or replace the file") from e


def _rgb_tensor(img: Image.Image) -> Tensor:
    return TF.pil_to_tensor(img.convert("RGB"))


def crop_box(width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params (scale 0.08-1, ratio 3/4-4/3), drawing from
    `rng` instead of the global generators: (top, left, height, width)."""
    area = height * width
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    in_ratio = width / height  # fallback: the central crop at the nearest allowed ratio
    if in_ratio < RATIO[0]:
        w, h = width, int(round(width / RATIO[0]))
    elif in_ratio > RATIO[1]:
        h, w = height, int(round(height * RATIO[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


# --- one batch across the worker queue ---------------------------------------------------------
#
# A batch crosses the DataLoader's queue as five tensors whatever its size (each tensor is one
# shared-memory file): the JPEG files still to decode end to end in one byte tensor, a table of
# what to do with each, and the images a worker decoded itself stacked in one. One tensor per
# file, as before, took a file descriptor per image and hung the run at the usual 1024 limit.

# Columns of Packed.raw: where the file's bytes are, the image's size from its header, and its
# resampling: the window (top, left, h, w) of the decoded image that is resized to
# (full_h, full_w), of which rows off_y.. and columns off_x.. (size x size) are kept, then flipped.
# Training: the random-resized crop's box, resized to size x size. Evaluation: the whole image,
# resized so its short side is size / crop_pct, then the centre crop.
RAW = ("pos", "byte_start", "byte_len", "img_h", "img_w", "top", "left", "h", "w", "full_h", "full_w", "off_y",
       "off_x", "flip")
_C = {name: i for i, name in enumerate(RAW)}


@dataclasses.dataclass
class Encoded:
    """A JPEG file to decode on the device, with its resampling (RAW's columns from img_h on)."""

    data: bytes
    label: int
    plan: tuple[int, ...]
    path: str


@dataclasses.dataclass
class Decoded:
    """An image the worker decoded and resampled itself (PIL): uint8, 3 x size x size."""

    image: Tensor
    label: int


@dataclasses.dataclass
class Packed:
    """A batch, made by `collate` in a worker."""

    labels: Tensor  # (n,) int64
    data: Tensor  # uint8: the files still to decode, end to end
    raw: Tensor  # (files, len(RAW)) int64
    decoded: Tensor  # (k, 3, size, size) uint8
    decoded_at: Tensor  # (k,) int64: their positions in the batch
    paths: list[str]  # of the files in `data` (pickled with the batch: no shared memory)

    def pin_memory(self) -> "Packed":  # DataLoader(pin_memory=True) calls this
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).pin_memory()
                                            for f in dataclasses.fields(self) if f.name != "paths"})


@dataclasses.dataclass
class Unreadable:
    """A file a worker could not read, in place of an image or batch: its DatasetError's message,
    raised by the trainer (StreamInputs._loaded). Raised in the worker, it would come back from
    torch with the worker's whole traceback as its message."""

    message: str


def collate(items: list[Encoded | Decoded | Unreadable]) -> Packed | Unreadable:
    failed = next((it for it in items if isinstance(it, Unreadable)), None)
    if failed is not None:
        return failed
    raw, data, paths, decoded, decoded_at, start = [], [], [], [], [], 0
    for pos, it in enumerate(items):
        if isinstance(it, Encoded):
            raw.append((pos, start, len(it.data), *it.plan))
            data.append(it.data)
            paths.append(it.path)
            start += len(it.data)
        else:
            decoded.append(it.image)
            decoded_at.append(pos)
    return Packed(torch.tensor([it.label for it in items]),
                  torch.frombuffer(bytearray(b"".join(data)), dtype=torch.uint8) if data
                  else torch.empty(0, dtype=torch.uint8),
                  torch.tensor(raw, dtype=torch.long).view(-1, len(RAW)),
                  torch.stack(decoded) if decoded else torch.empty(0, 3, 0, 0, dtype=torch.uint8),
                  torch.tensor(decoded_at, dtype=torch.long), paths)


def _jpeg(path: str) -> tuple[bytes, tuple[int, int]] | None:
    """(the file's bytes, (width, height)) of a JPEG the device decoder takes; None for anything
    else, an unreadable header included (the caller's PIL decode then names the file)."""
    try:
        with Image.open(path) as img:
            size, ok = img.size, img.format == "JPEG" and img.mode in ("RGB", "L")
        if not ok:
            return None
        with open(path, "rb") as f:
            return f.read(), size
    except Exception:  # noqa: BLE001 - any failure: decoded by PIL instead
        return None


class _Images(Dataset):
    def __init__(self, samples: Sequence[tuple[str, int]], size: int, interpolation: str, decode: str):
        if decode not in ("cpu", "device"):
            raise ValueError(f"decode={decode!r}: choose cpu or device")
        self.samples, self.size, self.decode = list(samples), size, decode
        self.interpolation = InterpolationMode(interpolation)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key) -> Encoded | Decoded | Unreadable:
        try:
            return self._item(key)
        except DatasetError as e:
            return Unreadable(str(e))

    def _item(self, key) -> Encoded | Decoded:
        raise NotImplementedError


class TrainImages(_Images):
    """Training images, indexed by (image, epoch): a crop box and flip drawn from (seed, epoch, image)."""

    def __init__(self, samples: Sequence[tuple[str, int]], *, size: int, seed: int, flip: bool = True,
                 interpolation: str = "bilinear", decode: str = "cpu"):
        super().__init__(samples, size, interpolation, decode)
        self.seed, self.flip = seed, flip

    def _item(self, key: tuple[int, int]) -> Encoded | Decoded:
        i, epoch = key
        path, label = self.samples[i]
        rng = random.Random(f"{self.seed}-{epoch}-{i}")  # str seeds hash the same in every process
        jpeg = _jpeg(path) if self.decode == "device" else None
        img = None if jpeg else _open(path)
        width, height = jpeg[1] if jpeg else img.size
        top, left, h, w = crop_box(width, height, rng)
        flip = self.flip and rng.random() < 0.5
        if jpeg:
            plan = (height, width, top, left, h, w, self.size, self.size, 0, 0, int(flip))
            return Encoded(jpeg[0], label, plan, path)
        out = _rgb_tensor(TF.resized_crop(img, top, left, h, w, [self.size, self.size], self.interpolation))
        return Decoded(out.flip(-1) if flip else out, label)


def eval_geometry(width: int, height: int, size: int, crop_pct: float) -> tuple[int, int, int, int]:
    """timm's evaluation transform as (full_h, full_w, off_y, off_x): torchvision's Resize of the
    short side to floor(size / crop_pct), then CenterCrop(size)."""
    short = math.floor(size / crop_pct)
    full_h, full_w = (short, int(short * width / height)) if height <= width else (int(short * height / width), short)
    return full_h, full_w, int(round((full_h - size) / 2.0)), int(round((full_w - size) / 2.0))


class EvalImages(_Images):
    """Evaluation images: resize the short side to size / crop_pct, centre crop (on the "cpu" path
    here, on the "device" path in `to_images`)."""

    def __init__(self, samples: Sequence[tuple[str, int]], *, size: int, crop_pct: float = 0.875,
                 interpolation: str = "bilinear", decode: str = "cpu"):
        super().__init__(samples, size, interpolation, decode)
        self.crop_pct = crop_pct

    def _item(self, i: int) -> Encoded | Decoded:
        path, label = self.samples[i]
        jpeg = _jpeg(path) if self.decode == "device" else None
        if jpeg:
            (width, height) = jpeg[1]
            geometry = eval_geometry(width, height, self.size, self.crop_pct)
            return Encoded(jpeg[0], label, (height, width, 0, 0, height, width, *geometry, 0), path)
        return Decoded(_center(_rgb_tensor(_open(path)), self.size, self.crop_pct, self.interpolation), label)


def _center(img: Tensor, size: int, crop_pct: float, interpolation: InterpolationMode) -> Tensor:
    """timm's evaluation transform: Resize(floor(size / crop_pct)) on the short side, CenterCrop(size)."""
    img = TF.resize(img, [math.floor(size / crop_pct)], interpolation, antialias=True)
    return TF.center_crop(img, [size, size])


# --- the batch on the device --------------------------------------------------------------------

_CHUNK = 2**26  # elements of padded crops resampled at once: bounds the transient memory per chunk
_SLACK = 1.5  # padding allowed per chunk: more chunks (kernels) against fewer wasted multiply-adds


def plan_batch(d: Draws, batch: Packed) -> None:
    """What the batch needs on the device, into the batch's one copy (`d`): its labels and the
    files' resampling plans, sorted by crop size (so each chunk pads little), with where each
    file's decoded pixels start in the concatenated decode."""
    d["labels"] = batch.labels
    d["decoded.at"] = batch.decoded_at
    raw = batch.raw
    if not len(raw):
        return
    order = torch.argsort(raw[:, _C["h"]] * 65536 + raw[:, _C["w"]], descending=True, stable=True)
    raw = raw[order]
    pixels = 3 * raw[:, _C["img_h"]] * raw[:, _C["img_w"]]
    # int32 where it fits: the resampling's gather indices take half the memory
    index = torch.int32 if int(pixels.sum()) < 2**31 else torch.int64
    d["raw.plan"] = raw.to(index)
    d["raw.start"] = (torch.cumsum(pixels, 0) - pixels).to(index)
    heights, widths = raw[:, _C["h"]].tolist(), raw[:, _C["w"]].tolist()
    # Greedy chunks (the first of each is its tallest): a chunk's padded crops stay under _CHUNK
    # elements and under _SLACK times the pixels its crops have (ImageNet batches: 4-8 chunks).
    chunks, first, widest, pixels_in = [], 0, 0, 0
    for k, (h, w) in enumerate(zip(heights, widths)):
        padded = (k + 1 - first) * heights[first] * max(widest, w)
        if k > first and (padded > _SLACK * (pixels_in + h * w) or 3 * padded > _CHUNK):
            chunks.append((first, k))
            first, widest, pixels_in = k, 0, 0
        widest, pixels_in = max(widest, w), pixels_in + h * w
    chunks.append((first, len(raw)))
    d.values["raw.chunks"] = chunks
    d.values["raw.order"] = order.tolist()
    d.values["raw.plan"] = raw  # the host's copy: file offsets and sizes for decoding and chunking


def to_images(batch: Packed, d: Draws, t: dict[str, Tensor], device: torch.device, *, size: int,
              interpolation: str = "bilinear") -> Tensor:
    """The batch as uint8 (B, 3, size, size) on `device` (`t`: d's tensors there). The files are
    decoded (nvJPEG on CUDA) and resampled in batched kernels; the images that came decoded from
    the workers take the batch's second copy."""
    raw = d.values.get("raw.plan")
    if raw is None:  # all decoded in the workers, in batch order
        return batch.decoded.to(device, non_blocking=True)
    out = torch.empty((len(batch.labels), 3, size, size), dtype=torch.uint8, device=device)
    if len(batch.decoded):
        out.index_copy_(0, t["decoded.at"], batch.decoded.to(device, non_blocking=True))
    order = d.values["raw.order"]
    files = [batch.data[s : s + n] for s, n in raw[:, [_C["byte_start"], _C["byte_len"]]].tolist()]
    if device.type == "cuda":
        # torchvision's CUDA decoder allocates its outputs on this thread's current stream and
        # writes them from a stream of its own that does not wait for ours. On the prefetch
        # stream, once that stream is idle, no queued kernel can still read memory the decoder
        # is handed: blocks freed on this stream are done with, and blocks the compute stream
        # uses were recorded on it (prefetch's record_stream), so the allocator keeps them.
        torch.cuda.current_stream(device).synchronize()
    images = _decode(files, [batch.paths[k] for k in order], device)
    for img, (h, w) in zip(images, raw[:, [_C["img_h"], _C["img_w"]]].tolist()):
        if tuple(img.shape[1:]) != (h, w):
            raise DatasetError(f"imagenet: a JPEG decoded to {tuple(img.shape[1:])} pixels where its header says "
                               f"{(h, w)}; train with decode: cpu")
    resampled = resample(torch.cat([img.reshape(-1) for img in images]), t["raw.plan"], t["raw.start"],
                         d.values["raw.chunks"], raw, size, interpolation)
    return out.index_copy_(0, t["raw.plan"][:, _C["pos"]].long(), resampled)


def _decode(files: list[Tensor], paths: list[str], device: torch.device) -> list[Tensor]:
    """Batched JPEG decoding on `device`. If the batch fails, each file is decoded alone, and one
    the device decoder rejects is read with PIL instead (which names it if it cannot either)."""
    try:
        return decode_jpeg(files, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        out = []
        for data, path in zip(files, paths):
            try:
                out.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                out.append(_rgb_tensor(_open(path)).to(device))
        return out


def _filter(name: str, x: Tensor) -> Tensor:
    """PIL's (and torchvision's) resampling filters: triangle, and Keys' cubic with a = -0.5."""
    x = x.abs()
    if name == "bilinear":
        return (1 - x).clamp_(min=0)
    a = -0.5
    return torch.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                       torch.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def _weights(in_len: Tensor, full: Tensor, offset: Tensor, size: int, padded: int, interpolation: str) -> Tensor:
    """(G, size, padded): rows offset .. offset + size of the antialiased resampling matrix from
    in_len to full samples, per image, zero from in_len on. As PIL computes it: output sample i
    is centred at (i + 0.5) * scale in the input, and a reduction widens the filter by the scale."""
    scale = (in_len / full)[:, None, None]
    widen = scale.clamp(min=1)
    centre = (offset[:, None, None] + _arange(size, in_len.device)[None, :, None] + 0.5) * scale
    x = _arange(padded, in_len.device)[None, None, :]
    w = _filter(interpolation, (x + 0.5 - centre) / widen) * (x < in_len[:, None, None])
    return w / w.sum(-1, keepdim=True)


def _round(x: Tensor) -> Tensor:
    """To 0..255 as PIL rounds each pass (half up)."""
    return x.add_(0.5).floor_().clamp_(0, 255)


def resample(flat: Tensor, plan: Tensor, start: Tensor, chunks: list[tuple[int, int]], host_plan: Tensor,
             size: int, interpolation: str) -> Tensor:
    """Every file's window resampled (antialiased, separable: rows, then columns, each rounded, as
    PIL does) and flipped, in a few chunks of batched kernels. `flat` holds the decoded images
    (3 x img_h x img_w each) end to end, from `start`; `plan` are the RAW rows, on the device."""
    out = []
    col = {name: plan[:, i] for name, i in _C.items()}
    for a, b in chunks:
        hm, wm = int(host_plan[a:b, _C["h"]].max()), int(host_plan[a:b, _C["w"]].max())
        p = {name: v[a:b] for name, v in col.items()}
        ih, iw = p["img_h"], p["img_w"]
        rows = torch.minimum(p["top"][:, None] + _arange(hm, flat.device, plan.dtype), ih[:, None] - 1)
        cols = torch.minimum(p["left"][:, None] + _arange(wm, flat.device, plan.dtype), iw[:, None] - 1)
        channel = _arange(3, flat.device, plan.dtype)[None, :, None, None] * (ih * iw)[:, None, None, None]
        index = (start[a:b, None, None, None] + channel + (rows * iw[:, None])[:, None, :, None]
                 + cols[:, None, None, :])
        crops = flat[index].float()  # (G, 3, hm, wm)
        wy = _weights(p["h"], p["full_h"], p["off_y"], size, hm, interpolation)
        wx = _weights(p["w"], p["full_w"], p["off_x"], size, wm, interpolation)
        wx = torch.where(p["flip"].bool()[:, None, None], wx.flip(1), wx)
        mid = _round(crops @ wx.transpose(1, 2)[:, None])  # (G, 3, hm, size): PIL's horizontal pass first
        out.append(_round(wy[:, None] @ mid).to(torch.uint8))
    return out[0] if len(out) == 1 else torch.cat(out)


class EpochSampler(Sampler[list[tuple[int, int]]]):
    """This rank's share of each global batch of one epoch, as (image, epoch) keys, from a step on.

    The order is a permutation drawn from (seed, epoch): the same for every arm at one seed,
    every world size and a resumed run. The last partial batch is dropped.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.n // self.batch_size - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm = torch.randperm(self.n, generator=generator(self.seed, self.epoch)).tolist()
        mine = Dist(self.rank, self.world).shard(self.batch_size)
        for step in range(self.start, self.n // self.batch_size):
            batch = perm[step * self.batch_size : (step + 1) * self.batch_size]
            yield [(i, self.epoch) for i in batch[mine]]


def resolve_decode(decode: str, device: torch.device) -> str:
    """`auto` decodes JPEGs on the training device when it is a GPU, else in CPU workers."""
    return ("device" if device.type == "cuda" else "cpu") if decode == "auto" else decode


class StreamInputs:
    """ImageNet read from its index (`mimetic prepare imagenet`) by DataLoader workers.

    Per image (mimetic.data.imagenet): random-resized crop (scale 0.08-1, the crop box drawn from
    (seed, epoch, image)) and flip, decoded either in the workers with PIL (`decode: cpu`) or on
    the training device with nvJPEG through torchvision (`decode: device`; the workers only read
    the file, and the batch crosses the worker queue as one packed byte tensor). Per batch, on
    the device: RandAugment, normalization with the ImageNet mean and std, random erasing,
    mixup/cutmix, drawn from (seed, epoch, step) for the global batch.

    Under torchrun each rank loads and augments only its share of every global batch, with the
    global batch's draws: a data-parallel run sees exactly the inputs of a single process.
    """

    timeout = 300.0  # seconds without a batch from the workers before the run stops, naming the likely causes

    def __init__(self, cfg: TrainConfig, device: torch.device, dist: Dist = Dist(), prefetch: int = DEPTH):
        folder = Path(cfg.data_root) if cfg.data_root else DATA_DIR / cfg.dataset
        meta_path = folder / INDEX_FILES["meta"]
        if not meta_path.is_file():
            raise DatasetUnavailable(f"{cfg.dataset}: not indexed: {meta_path} does not exist. Run the data stage "
                                     f"(`mimetic prepare imagenet --root <your copy>`, or the workflow with the "
                                     f"config key {imagenet.ROOT_KEY} set)")
        meta = json.loads(meta_path.read_text())
        self.cfg, self.dist, self.device, self.prefetch = cfg, dist, device, prefetch
        self.num_classes, self.channels = len(meta["classes"]), 3
        self.decode = resolve_decode(cfg.decode, device)
        self.size = size = image_size(cfg.model)
        self.train_set = TrainImages(imagenet.read_index(folder / INDEX_FILES["train"]), size=size, seed=cfg.seed,
                                              flip=cfg.flip != "no", interpolation=cfg.interpolation,
                                              decode=self.decode)
        val = imagenet.read_index(folder / INDEX_FILES["test"])
        self.test_set = EvalImages(val[dist.shard(len(val))], size=size, crop_pct=cfg.eval_crop,
                                            interpolation=cfg.interpolation, decode=self.decode)
        self.batch_size = min(cfg.batch_size, len(self.train_set))
        self.steps = len(self.train_set) // self.batch_size
        check_mix_shards(cfg, self.batch_size, dist)
        self.augment = batch_augment(cfg, device, (3, size, size), self.num_classes, MEAN, STD)
        self.sampler = EpochSampler(len(self.train_set), self.batch_size, cfg.seed, dist.rank, dist.world)
        workers = cfg.workers if cfg.workers is not None else default_workers()
        # Their own generator: a DataLoader draws its workers' base seed at every `iter`, from the
        # global RNG otherwise, which the model's dropout and drop-path draw from (and a resumed
        # run restores). Per-image draws are seeded per image, so the base seed is unused.
        common = dict(num_workers=workers, persistent_workers=workers > 0, pin_memory=device.type == "cuda",
                      collate_fn=collate, generator=torch.Generator(),
                      timeout=self.timeout if workers > 0 else 0)
        self.train_loader = DataLoader(self.train_set, batch_sampler=self.sampler, **common)
        self.test_loader = DataLoader(self.test_set, batch_size=cfg.eval_batch_size, **common)

    def _images(self, batch: Packed, d: Draws) -> tuple[Tensor, Tensor]:
        plan_batch(d, batch)
        t = d.to(self.device)
        x = to_images(batch, d, t, self.device, size=self.size, interpolation=self.cfg.interpolation)
        return x, t

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        self.sampler.set_epoch(epoch, start)
        return prefetch(lambda: self._epoch(epoch, start), self.device, self.prefetch)

    def _epoch(self, epoch: int, start: int) -> Iterator[Batch]:
        mine = self.dist.shard(self.batch_size)
        for step, batch in enumerate(self._loaded(self.train_loader), start=start):
            d = Draws()
            self.augment.plan(d, generator(self.cfg.seed, epoch, step), self.batch_size, mine)
            x, t = self._images(batch, d)
            yield self.augment.apply(x, t["labels"], d, t)

    def test(self) -> Iterator[Batch]:
        return prefetch(self._test, self.device, self.prefetch)

    def _test(self) -> Iterator[Batch]:
        for batch in self._loaded(self.test_loader):
            x, t = self._images(batch, Draws())
            yield self.augment.normalize(x), t["labels"]

    def _loaded(self, loader: DataLoader) -> Iterator[Packed]:
        """The loader's batches; a file a worker could not read ends the run naming it, and a worker
        that died or stopped answering with the likely causes, never a hang (DataLoader's timeout)."""
        batches = iter(loader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except DatasetError:
                raise
            except (RuntimeError, EOFError, ConnectionError) as e:
                # RuntimeError: torch found a worker dead or silent; EOFError, ConnectionResetError:
                # one died while handing over a batch's shared memory.
                _shut_down(loader)
                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                raise_to = max(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
                raise DatasetError(f"imagenet: the DataLoader workers stopped ({type(e).__name__}: {e}). Likely "
                                   f"causes: the open-file limit (`ulimit -n` is {soft}, at most {hard}: raise it, "
                                   f"e.g. `ulimit -n {raise_to}`), a worker "
                                   "killed for memory (see `dmesg`), or a stalled file system; fewer `workers` or a "
                                   "smaller batch need less of both") from e
            if isinstance(batch, Unreadable):
                raise DatasetError(batch.message)
            yield batch


def _shut_down(loader: DataLoader) -> None:
    """Stop a persistent loader's workers after one died: torch's SIGCHLD handler keeps their pids
    otherwise, and raises at the exit of any later child process, wherever the program is then."""
    if loader._iterator is not None:  # private: DataLoader has no public way to end its workers
        loader._iterator._shutdown_workers()
        loader._iterator = None
