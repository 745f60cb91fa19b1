"""The successors and controls, each checked against an independent computation here, from the
modules' raw weights: impulse's attention peaks, conditioned's semi-orthogonality, the identity
controls' exact products, the MLP mean."""

import math

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from mimetic import apply_init
from mimetic.attention._successors import IMPULSE_ORDER, truncated_normal


def vit(seed=0, img=8, patch=2, dim=96, heads=3, depth=2, class_token=True):
    torch.manual_seed(seed)
    return VisionTransformer(img_size=img, patch_size=patch, in_chans=1, embed_dim=dim, depth=depth, num_heads=heads,
                             num_classes=10, class_token=class_token, global_pool="token" if class_token else "avg")


def qk_of(model, block, head):
    """W_q^h and W_k^h (d x k, x @ W) straight from timm's fused qkv weight (rows q; k; v)."""
    w = model.blocks[block].attn.qkv.weight.detach().double()
    d = w.shape[1]
    k = d // model.blocks[block].attn.num_heads
    return w[head * k:(head + 1) * k].T, w[d + head * k:d + (head + 1) * k].T


# vit_digits' shape; ViT-Tiny/2 on 32 px (256 tokens, heads of 64: the published setting); all nine
# offsets. (Heads much narrower than the token count cannot hold the shift: 16 wide for 64 tokens
# peaks right for about 40% of the queries.)
@pytest.mark.parametrize("img, patch, dim, heads", [(8, 2, 96, 3), (32, 2, 192, 3), (16, 2, 288, 9)])
@pytest.mark.parametrize("class_token", [True, False])
def test_impulse_attention_on_position_embeddings_peaks_at_each_heads_offset(img, patch, dim, heads, class_token):
    """With no content, a token's input is its position embedding: the logits q k^T of head h peak,
    for most query tokens, on the key at that head's 3x3 offset (centre, up, right, left, ...)."""
    model = apply_init(vit(img=img, patch=patch, dim=dim, heads=heads, class_token=class_token), "impulse", seed=0)
    grid = img // patch
    pos = model.pos_embed.detach().double()[0, 1 if class_token else 0:]
    x = F.layer_norm(pos, (dim,))  # the block's norm1 at init: no affine change
    for block in range(2):
        for h in range(heads):
            wq, wk = qk_of(model, block, h)
            logits = (x @ wq) @ (x @ wk).T
            cell = IMPULSE_ORDER[h % 9]
            m, n = cell // 3 - 1, cell % 3 - 1
            hits = total = 0
            for r in range(grid):
                for c in range(grid):
                    if 0 <= r + m < grid and 0 <= c + n < grid:
                        total += 1
                        hits += int(logits[r * grid + c].argmax()) == (r + m) * grid + c + n
            assert hits >= 0.9 * total, (block, h, hits, total)


def test_impulse_scales_the_position_embedding_and_keeps_mimetic_vo():
    base, model = vit(seed=1), apply_init(vit(seed=1), "impulse", seed=1)
    torch.testing.assert_close(model.pos_embed, 18.0 * base.pos_embed)
    w = model.blocks[0].attn.qkv.weight.detach().double()
    d = w.shape[1]
    wv, wproj = w[2 * d:].T, model.blocks[0].attn.proj.weight.detach().double().T
    noise = (wv @ wproj + 0.4 * torch.eye(d)) / 0.4  # W_v W_proj = 0.4 Z - 0.4 I, Z uniform with variance 1/d
    assert noise.var().item() == pytest.approx(1 / d, rel=0.15)
    assert noise.abs().max().item() <= math.sqrt(3 / d) * 1.001
    for h in range(3):  # each factor scaled to Frobenius norm 7
        wq, wk = qk_of(model, 0, h)
        assert wq.norm().item() == pytest.approx(7.0, rel=1e-4) and wk.norm().item() == pytest.approx(7.0, rel=1e-4)


def test_truncated_normal_is_timms():
    x = truncated_normal((200_000,), 0.6, torch.Generator().manual_seed(0))
    assert x.abs().max() <= 2.0 and abs(x.mean().item()) < 0.01
    # the N(0, 0.6) cut at +-2 (3.33 sd) keeps almost all its variance
    assert x.std().item() == pytest.approx(0.6 * math.sqrt(1 - 2 * (2 / 0.6) * math.exp(-(2 / 0.6) ** 2 / 2)
                                                  / math.sqrt(2 * math.pi) / math.erf(2 / 0.6 / math.sqrt(2))),
                                           rel=0.01)


@pytest.mark.parametrize("params", [{}, {"qk_gain": 2.0, "v_scale": 0.5, "proj": "identity"}])
def test_conditioned_q_and_k_are_semi_orthogonal_per_head(params):
    base, model = vit(seed=2), apply_init(vit(seed=2), "conditioned", seed=2, **params)
    gain, scale = params.get("qk_gain", 1.0), params.get("v_scale", 1.0)
    d, k = 96, 32
    for block in range(2):
        for h in range(3):
            for w in qk_of(model, block, h):
                torch.testing.assert_close(w.T @ w, gain ** 2 * torch.eye(k, dtype=torch.float64), atol=1e-5, rtol=0)
        wv = model.blocks[block].attn.qkv.weight.detach().double()[2 * d:].T
        torch.testing.assert_close(wv, scale * torch.eye(d, dtype=torch.float64))
        proj, own = model.blocks[block].attn.proj.weight, base.blocks[block].attn.proj.weight
        if params.get("proj") == "identity":
            torch.testing.assert_close(proj.detach().double(), torch.eye(d, dtype=torch.float64))
        else:
            assert torch.equal(proj, own)
    wq0, _ = qk_of(model, 0, 0)
    wq1, _ = qk_of(model, 0, 1)
    assert (wq0.T @ wq1).abs().max() > 0.05  # heads are drawn independently, not one orthogonal matrix


@pytest.mark.parametrize("init", ["identity", "identity-qk"])
@pytest.mark.parametrize("beta1, beta2", [(0.5, 0.25), (-0.5, -0.25)])  # negative: the signs flipped
def test_identity_controls_are_the_identity_exactly(init, beta1, beta2):
    model = apply_init(vit(seed=3), init, seed=3, beta1=beta1, **({"beta2": beta2} if init == "identity" else {}))
    d, k = 96, 32
    for block in range(2):
        total = torch.zeros(d, d, dtype=torch.float64)
        for h in range(3):
            wq, wk = qk_of(model, block, h)
            own = torch.zeros(d, d, dtype=torch.float64)
            own[h * k:(h + 1) * k, h * k:(h + 1) * k] = torch.eye(k)
            torch.testing.assert_close(wq @ wk.T, beta1 * own, atol=1e-7, rtol=0)  # I on the head's own coordinates
            total += wq @ wk.T
        torch.testing.assert_close(total, beta1 * torch.eye(d, dtype=torch.float64), atol=1e-7, rtol=0)
        if init == "identity":
            wv = model.blocks[block].attn.qkv.weight.detach().double()[2 * d:].T
            wproj = model.blocks[block].attn.proj.weight.detach().double().T
            torch.testing.assert_close(wv @ wproj, -beta2 * torch.eye(d, dtype=torch.float64), atol=1e-7, rtol=0)


@pytest.mark.parametrize("mean", [0.02, -0.05])
def test_mimetic_mlp_gives_the_first_mlp_layer_the_configured_mean(mean):
    base, model = vit(seed=4), apply_init(vit(seed=4), "mimetic-mlp", seed=4, mlp_mean=mean)
    for b_own, b in zip(base.blocks, model.blocks):
        torch.testing.assert_close(b.mlp.fc1.weight - b_own.mlp.fc1.weight, torch.full_like(b.mlp.fc1.weight, mean))
        w = b.mlp.fc1.weight.detach().double()
        assert w.mean().item() == pytest.approx(mean, abs=4 * 0.02 / math.sqrt(w.numel()))
        assert torch.equal(b.mlp.fc2.weight, b_own.mlp.fc2.weight) and torch.equal(b.mlp.fc1.bias, b_own.mlp.fc1.bias)


@pytest.mark.parametrize("teacher, student", [(12, 4), (12, 12), (10, 4), (10, 3), (7, 3), (384, 192), (5, 1)])
def test_weight_selection_indices_follow_the_rule(teacher, student):
    """Every (T/s)-th index where s divides T, else round(linspace) from the first to the last."""
    import numpy as np

    from mimetic.attention._weight_selection import selected_indices

    rule = (np.arange(student) * (teacher // student) if teacher % student == 0
            else np.round(np.linspace(0, teacher - 1, student)))
    assert selected_indices(teacher, student).tolist() == rule.astype(int).tolist()
    with pytest.raises(ValueError, match="larger than the teacher's"):
        selected_indices(student, teacher + 1)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from teacher import planted_teacher

    path = tmp_path_factory.mktemp("teacher") / "vit_tiny.safetensors"
    return path, planted_teacher(path)


def test_weight_selection_takes_exactly_the_named_elements_of_a_planted_teacher(teacher):
    """vit_digits (96 wide, 4 blocks, MLP 192, 2 px patches, 1 channel, no class token) from
    ViT-Tiny/16 (192, 12 blocks, MLP 768, 16 px, RGB, class token): every other row and column,
    every 4th MLP row, block i from block i, the first channel, the kernel and grid resampled with
    timm's helpers, the final norm into fc_norm, the head untouched."""
    from timm.layers import resample_abs_pos_embed, resample_patch_embed

    from mimetic.train.models import build_vit
    from teacher import TEACHER

    path, t = teacher
    torch.manual_seed(0)
    own = build_vit("vit_digits", num_classes=10, in_chans=1).state_dict()
    torch.manual_seed(0)
    student = apply_init(build_vit("vit_digits", num_classes=10, in_chans=1), "weight-selection", seed=0,
                         teacher=TEACHER, file=str(path))
    s = student.state_dict()
    for i in range(4):
        b = f"blocks.{i}."
        torch.testing.assert_close(s[b + "attn.qkv.weight"], t[b + "attn.qkv.weight"][::2, ::2], rtol=0, atol=0)
        torch.testing.assert_close(s[b + "attn.qkv.bias"], t[b + "attn.qkv.bias"][::2], rtol=0, atol=0)
        torch.testing.assert_close(s[b + "attn.proj.weight"], t[b + "attn.proj.weight"][::2, ::2], rtol=0, atol=0)
        torch.testing.assert_close(s[b + "mlp.fc1.weight"], t[b + "mlp.fc1.weight"][::4, ::2], rtol=0, atol=0)
        torch.testing.assert_close(s[b + "mlp.fc2.weight"], t[b + "mlp.fc2.weight"][::2, ::4], rtol=0, atol=0)
        torch.testing.assert_close(s[b + "norm2.bias"], t[b + "norm2.bias"][::2], rtol=0, atol=0)
    torch.testing.assert_close(s["fc_norm.weight"], t["norm.weight"][::2], rtol=0, atol=0)
    kernel = resample_patch_embed(t["patch_embed.proj.weight"][::2, :1], [2, 2])
    torch.testing.assert_close(s["patch_embed.proj.weight"], kernel, rtol=0, atol=0)
    pos = resample_abs_pos_embed(t["pos_embed"][..., ::2], [4, 4], [14, 14], num_prefix_tokens=1)[:, 1:]
    torch.testing.assert_close(s["pos_embed"], pos, rtol=0, atol=0)
    assert torch.equal(s["head.weight"], own["head.weight"]) and torch.equal(s["head.bias"], own["head.bias"])


def test_weight_selection_refuses_a_student_wider_than_its_teacher(teacher):
    from mimetic.train.models import build_vit
    from teacher import TEACHER

    with pytest.raises(ValueError, match=r"weight selection, pos_embed: .* 384 is larger than the teacher.s 192"):
        apply_init(build_vit("vit_small_patch16_224", num_classes=10), "weight-selection", teacher=TEACHER,
                   file=str(teacher[0]))


def test_weight_selection_from_a_file_of_another_architecture_says_so_in_one_line(teacher):
    from mimetic.train.models import build_vit

    with pytest.raises(ValueError, match=r"does not fit teacher='vit_small_patch16_224'.*size mismatch"):
        apply_init(build_vit("vit_digits", num_classes=10, in_chans=1), "weight-selection",
                   teacher="vit_small_patch16_224", file=str(teacher[0]))
