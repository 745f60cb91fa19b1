"""`mimetic bench`'s parts: the FLOP count, the fast path against the plain path, the reference
loop's Posterize fix, and packed runs against runs trained alone."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from safetensors.torch import load_file

from mimetic.bench.project import _optimizer
from mimetic.bench.flops import set_fused_attention, training_flops
from mimetic.train.models import build_vit, geometry
from mimetic.train.models import build_model
from mimetic.train.recipe import TrainConfig
from mimetic.bench.reference import CountedPosterize, reference_transform
from mimetic.train.loop import train, train_step


def hand_count(name: str, *, in_chans: int, num_classes: int, class_token: bool) -> int:
    """Training FLOPs per image of a ViT, by hand: 2 per multiply-add; the backward pass costs two
    forwards (input and weight gradients), except the patch embedding's, whose input (the image)
    needs no gradient."""
    m = geometry(name)
    d, p, depth = m["embed_dim"], m["patch_size"], m["depth"]
    hidden = int(d * m.get("mlp_ratio", 4.0))
    patches = (m["img_size"] // p) ** 2
    n = patches + class_token
    embed = 2 * patches * (in_chans * p * p) * d
    block = (2 * n * d * 3 * d  # qkv
             + 2 * 2 * n * n * d  # q k^T and attention @ v, all heads together
             + 2 * n * d * d  # output projection
             + 2 * 2 * n * d * hidden)  # the MLP's two layers
    head = 2 * d * num_classes
    forward = embed + depth * block + head
    return 3 * forward - embed


@pytest.mark.parametrize("pool", ["avg", "token"])
def test_training_flops_match_the_hand_count(pool):
    model = build_vit("vit_digits", num_classes=10, in_chans=1, pool=pool)
    counted = training_flops(model, (1, 8, 8))
    assert counted == hand_count("vit_digits", in_chans=1, num_classes=10, class_token=pool == "token")
    assert model.blocks[0].attn.fused_attn  # the count switches a copy's attention, not the model's


def test_vit_tiny_flops_are_the_issues_scale():
    model = build_vit("vit_tiny_patch4_32", num_classes=10, in_chans=3)
    flops = training_flops(model, (3, 32, 32))
    assert flops == hand_count("vit_tiny_patch4_32", in_chans=3, num_classes=10, class_token=False)
    assert 2.0e9 < flops < 2.3e9  # issue 12: about 2.2 GFLOP per training image at patch 4


def _steps(sdpa: bool, fused: str, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[list[float], dict]:
    cfg = TrainConfig(dataset="digits", model="vit_digits", init="mimetic", batch_size=32).validate()
    net = build_model(cfg, num_classes=10, in_chans=1)
    set_fused_attention(net, sdpa)
    optimizer = _optimizer(cfg, net, torch.device("cpu"), fused)
    losses = [train_step(net, optimizer, *batch, cfg)[0].item() for _ in range(3)]
    return losses, net.state_dict()


def test_fast_path_computes_the_plain_paths_losses():
    """SDPA + fused AdamW (the CPU runs the code path with compile and graphs off) against
    explicit attention + torch's default AdamW, on one fixed batch for three updates."""
    gen = torch.Generator().manual_seed(0)
    batch = torch.randn(32, 1, 8, 8, generator=gen), torch.randint(10, (32,), generator=gen)
    plain, plain_state = _steps(False, "off", batch)
    fast, fast_state = _steps(True, "on", batch)
    assert fast == pytest.approx(plain, rel=1e-4)
    assert plain[2] < plain[0]  # the updates took effect
    for k in plain_state:
        torch.testing.assert_close(fast_state[k], plain_state[k], rtol=1e-3, atol=1e-4)


def test_bf16_autocast_loss_is_within_bf16_tolerance_of_fp32():
    cfg = TrainConfig(dataset="synthetic", model="vit_tiny_patch4_32", init="mimetic").validate()
    net = build_model(cfg, num_classes=10, in_chans=3).eval()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 32, 32, generator=gen), torch.randint(10, (8,), generator=gen)
    with torch.no_grad():
        full = F.cross_entropy(net(x), y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = F.cross_entropy(net(x).float(), y)
    assert half.item() == pytest.approx(full.item(), rel=2e-2)


def _image() -> Image.Image:
    gen = torch.Generator().manual_seed(2)
    return Image.fromarray(torch.randint(0, 256, (8, 8, 3), generator=gen, dtype=torch.uint8).numpy())


def test_reference_randaugment_survives_zero_bit_posterize_and_counts_it():
    cfg = TrainConfig(dataset="synthetic", model="vit_tiny_patch4_32", randaugment="rand-m9-mstd0.5-inc1").validate()
    counter = CountedPosterize()
    transform = reference_transform(cfg, 8, torch.full((3,), 0.5), torch.full((3,), 0.25), True, counter)
    ra = next(t for t in transform.transforms if hasattr(t, "ops"))
    op = next(o for o in ra.ops if o.name == "PosterizeIncreasing")
    assert op.aug_fn is counter  # wired into timm's op
    op.prob, op.magnitude_std, img = 1.0, 0.0, _image()

    op.magnitude = 5  # keeps 2 bits: timm's own result, nothing counted
    assert op(img).tobytes() == ImageOps.posterize(img, 2).tobytes()
    assert counter.zero_bits == counter.errors_caught == 0

    op.magnitude = 10  # keeps 0 bits: Pillow 13 raises; the result is black, as Pillow < 13 gave
    out = op(img)
    assert out.size == img.size and out.mode == img.mode and not any(out.tobytes())
    assert counter.zero_bits == 1
    assert counter.errors_caught in (0, 1)
    with pytest.raises(ValueError):  # only the 0-bit error is caught
        counter(img, -1)


RECIPE = {"dataset": "digits", "model": "vit_digits", "batch_size": 256, "warmup_epochs": 1, "lr": 0.002,
          "crop_padding": 1, "randaugment": "rand-m9-mstd0.5-inc1", "init": "mimetic", "epochs": 2}
EXACT = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]


def _train(seed: int, out) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mimetic", "train", "--recipe", json.dumps(RECIPE), "--seed",
                             str(seed), "--gpus", "0", "--threads", "1", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_runs_packed_on_one_device_give_the_metrics_of_runs_trained_alone(tmp_path):
    """Packing = several runs' processes on one device at once: each run's result must not depend
    on its neighbours (exactly, on the CPU)."""
    packed = [_train(seed, tmp_path / f"packed{seed}") for seed in (0, 1)]
    for proc in packed:
        assert proc.wait(timeout=600) == 0, proc.stdout.read()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the processes (--threads 1): the same float reductions
    try:
        for seed in (0, 1):  # alone, one after the other, in this process
            train(TrainConfig(**RECIPE, seed=seed), tmp_path / f"alone{seed}", device="cpu", log=lambda s: None)
    finally:
        torch.set_num_threads(threads)
    for seed in (0, 1):
        alone, together = tmp_path / f"alone{seed}", tmp_path / f"packed{seed}"
        pd.testing.assert_frame_equal(pd.read_csv(together / "metrics.csv")[EXACT],
                                      pd.read_csv(alone / "metrics.csv")[EXACT])
        a, b = load_file(alone / "final.safetensors"), load_file(together / "final.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not pd.read_csv(tmp_path / "alone0" / "metrics.csv")[EXACT].equals(
        pd.read_csv(tmp_path / "alone1" / "metrics.csv")[EXACT])  # two seeds, two different runs
