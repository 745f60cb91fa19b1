"""The initializations: exact construction, statistics, isolation, errors, determinism."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention, VisionTransformer
from torch import nn

from mimetic import apply_init
from mimetic.attention.weights import attention_layers
from mimetic.attention._mimetic import qk_factors, qk_target, vo_target
from mimetic.attention.init import INITS
from mimetic.attention.structure import attention_products, structure_metrics

D, HEADS, DEPTH = 192, 3, 12
K = D // HEADS
ALPHA1, BETA1, ALPHA2, BETA2 = 0.7, 0.7, 0.4, 0.4


def vit(seed: int = 0, depth: int = DEPTH) -> VisionTransformer:
    torch.manual_seed(seed)
    return VisionTransformer(img_size=8, patch_size=4, embed_dim=D, depth=depth, num_heads=HEADS, num_classes=10)


def targets(seed: int, layers: int, heads: int, d: int, dist: str = "normal"):
    """Regenerate the targets in the documented draw order: per layer, Q/K heads then V/Proj."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(layers):
        qk = [qk_target(d, ALPHA1, BETA1, gen, dist) for _ in range(heads)]
        out.append((qk, vo_target(d, ALPHA2, BETA2, gen, dist)))
    return out


def truncate(a: np.ndarray, k: int) -> np.ndarray:
    """Best rank-k approximation, computed independently of the package (numpy)."""
    u, s, vt = np.linalg.svd(a)
    return (u[:, :k] * s[:k]) @ vt[:k]


@pytest.fixture(scope="module")
def mimetic_vit():
    return apply_init(vit(), "mimetic", seed=7)


@pytest.fixture(scope="module")
def expected_qk_stats():
    """Monte Carlo, in numpy, of the rank-k truncation of alpha Z + beta I: E[diag mean] and
    E[mean |off-diagonal|]. Bounds that follow without sampling: a random k-dim projection
    would keep beta * k / d of the diagonal, the full matrix keeps beta."""
    rng = np.random.default_rng(0)
    diag, off = [], []
    for _ in range(60):
        a = ALPHA1 * rng.normal(0, 1 / math.sqrt(D), (D, D)) + BETA1 * np.eye(D)
        t = truncate(a, K)
        diag.append(np.diag(t).mean())
        off.append((np.abs(t).sum() - np.abs(np.diag(t)).sum()) / (D * D - D))
    return float(np.mean(diag)), float(np.mean(off))


def test_qk_factors_are_the_rank_k_truncation():
    a = qk_target(D, ALPHA1, BETA1, torch.Generator().manual_seed(0))
    wq, wk = qk_factors(a, K)
    assert wq.shape == wk.shape == (D, K)
    product = (wq @ wk.T).numpy()
    np.testing.assert_allclose(product, truncate(a.numpy(), K), atol=1e-10)
    assert np.linalg.matrix_rank(product, tol=1e-8) == K


def test_qk_diagonal_matches_the_truncation_statistics(mimetic_vit, expected_qk_stats):
    diag_expected, off_expected = expected_qk_stats
    assert BETA1 * K / D < diag_expected < BETA1  # the derivation's bounds
    assert diag_expected == pytest.approx(0.39, abs=0.02)  # the value the issue quotes
    m = structure_metrics(attention_products(mimetic_vit))
    qk = m[m["product"] == "qk"]
    assert len(qk) == DEPTH * HEADS
    assert qk["diag_mean"].mean() == pytest.approx(diag_expected, abs=0.01)
    assert (qk["diag_mean"] > 0.3).all()
    # Full-rank noise alpha * N(0, 1/d) has mean |entry| alpha * sqrt(2 / (pi d)) = 0.040; the
    # truncation drops noise but spreads part of beta * I off the diagonal: about the same.
    assert qk["offdiag_abs_mean"].mean() == pytest.approx(off_expected, rel=0.05)
    assert off_expected == pytest.approx(ALPHA1 * math.sqrt(2 / (math.pi * D)), rel=0.1)


def test_heads_get_independent_noise(mimetic_vit):
    qk = attention_products(mimetic_vit)["qk"]
    off = ~torch.eye(D, dtype=torch.bool)
    flat = torch.stack([qk[layer, h][off] for layer in range(DEPTH) for h in range(HEADS)])
    corr = torch.corrcoef(flat)
    corr.fill_diagonal_(0)
    assert corr.abs().max() < 0.2  # one Q/K pair reused for every head would give 1


def test_products_match_their_targets_through_the_modules_own_weights(mimetic_vit):
    """Go through the nn.Linear weights as the forward pass uses them, not our adapter."""
    x = torch.randn(5, D, dtype=torch.float64)
    for blk, (qk_t, vo_t) in zip(mimetic_vit.blocks, targets(7, DEPTH, HEADS, D)):
        w_qkv, w_proj = blk.attn.qkv.weight.detach().double(), blk.attn.proj.weight.detach().double()
        q, k, v = F.linear(x, w_qkv[:D]), F.linear(x, w_qkv[D : 2 * D]), F.linear(x, w_qkv[2 * D :])
        for h in range(HEADS):
            cols = slice(h * K, (h + 1) * K)
            scores = q[:, cols] @ k[:, cols].T
            expected = x.numpy() @ truncate(qk_t[h].numpy(), K) @ x.numpy().T
            np.testing.assert_allclose(scores.numpy(), expected, atol=1e-4)
        out = F.linear(v, w_proj)
        torch.testing.assert_close(out, x @ vo_t, atol=1e-5, rtol=1e-4)
        # A transposition slip keeps the diagonal but not the noise: the test must see it.
        assert not torch.allclose(out, x @ vo_t.T, atol=1e-3)


def test_vo_through_a_real_forward_pass():
    """With one token, attention is the identity map, so timm's Attention computes
    x W_v W_proj plus the bias terms."""
    attn = Attention(dim=D, num_heads=HEADS, qkv_bias=True)
    apply_init(attn, "mimetic-vo", seed=3)
    gen = torch.Generator().manual_seed(3)
    a = vo_target(D, ALPHA2, BETA2, gen)
    x = torch.randn(4, 1, D)
    b_v = attn.qkv.bias[2 * D :]
    expected = (x.double() @ a) + (b_v.double() @ attn.proj.weight.double().T) + attn.proj.bias.double()
    with torch.no_grad():
        torch.testing.assert_close(attn(x).double(), expected, atol=1e-4, rtol=1e-4)


def test_vo_diagonal_and_noise_scale(mimetic_vit):
    vo = attention_products(mimetic_vit)["vo"].double()
    noise = (vo + BETA2 * torch.eye(D)) / ALPHA2  # should be Z: entries with variance 1/d
    assert noise.mean().abs() < 0.01
    assert noise.var().item() == pytest.approx(1 / D, rel=0.05)  # not 1/d^2 (Z scaled by 1/d)
    assert torch.diagonal(vo, dim1=-2, dim2=-1).mean().item() == pytest.approx(-BETA2, abs=0.01)


EXPECTED = {"default": set(), "mimetic": {"q", "k", "v", "proj"}, "mimetic-qk": {"q", "k"},
            "mimetic-vo": {"v", "proj"}, "identity": {"q", "k", "v", "proj"}, "identity-qk": {"q", "k"},
            "mimetic-mlp": {"q", "k", "v", "proj", "mlp.fc1.weight"},
            "impulse": {"q", "k", "v", "proj", "pos_embed"}, "conditioned": {"q", "k", "v"}, "vo-only": {"v", "proj"},
            # every tensor but the head's (parts_changed's names: blocks' without their "blocks.i.")
            "weight-selection": {"q", "k", "v", "proj", "attn.qkv.bias", "attn.proj.bias", "norm1.weight",
                                 "norm1.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                                 "mlp.fc2.weight", "mlp.fc2.bias", "cls_token", "pos_embed", "patch_embed.proj.weight",
                                 "patch_embed.proj.bias", "norm.weight", "norm.bias"}}


def parts_changed(model, base):
    """Which tensors (attention q/k/v rows and proj apart) differ, computed here from the modules'
    own state dicts, not through the package's part bookkeeping."""
    base_sd, changed = base.state_dict(), set()
    for name, p in model.state_dict().items():
        if name.endswith("attn.qkv.weight"):
            changed |= {part for i, part in enumerate("qkv")
                        if not torch.equal(p[i * D:(i + 1) * D], base_sd[name][i * D:(i + 1) * D])}
        elif name.endswith("attn.proj.weight"):
            changed |= set() if torch.equal(p, base_sd[name]) else {"proj"}
        elif not torch.equal(p, base_sd[name]):
            changed.add(name.split(".", 2)[-1] if name.startswith("blocks.") else name)
    return changed


def test_every_init_is_listed_here():
    assert set(EXPECTED) == set(INITS)


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    from teacher import planted_teacher

    path = tmp_path_factory.mktemp("teacher") / "vit_tiny.safetensors"
    planted_teacher(path)
    return str(path)


@pytest.mark.parametrize("init", sorted(EXPECTED))
@pytest.mark.parametrize("seed", [3, 4])
def test_each_init_changes_exactly_what_it_declares(init, seed, teacher_file):
    """Fair by construction: for every init and seed, everything else equals the model's own init
    of that seed bit for bit (biases, norms, MLPs, embeddings, head), and the global RNG is untouched."""
    from teacher import TEACHER

    params = {"teacher": TEACHER, "file": teacher_file} if init == "weight-selection" else {}
    base = apply_init(vit(seed=seed, depth=2), "default", seed=seed)
    rng_after_base = torch.rand(3)
    model = apply_init(vit(seed=seed, depth=2), init, seed=seed, **params)
    assert torch.equal(torch.rand(3), rng_after_base)
    assert parts_changed(model, base) == EXPECTED[init]  # apply_init refuses anything undeclared


def test_an_init_that_writes_what_it_does_not_declare_stops_naming_the_tensor():
    from mimetic.attention.init import register_init

    @register_init("test-leaky", touches=("q",))
    def leaky(model, gen):
        with torch.no_grad():
            model.pos_embed.add_(1.0)

    try:
        with pytest.raises(RuntimeError, match=r"init 'test-leaky' changed \['pos_embed'\], which it does not declare"):
            apply_init(vit(depth=1), "test-leaky", seed=0)
    finally:
        del INITS["test-leaky"]


def test_torch_multihead_attention_in_a_transformer_encoder():
    d, heads = 64, 4
    layer = nn.TransformerEncoderLayer(d_model=d, nhead=heads, dim_feedforward=128, batch_first=True)
    enc = nn.TransformerEncoder(layer, num_layers=3, enable_nested_tensor=False)
    apply_init(enc, "mimetic", seed=1)
    vo_targets = [t[1] for t in targets(1, 3, heads, d)]
    x = torch.randn(6, 1, d)
    for mha, vo_t in zip([m.self_attn for m in enc.layers], vo_targets):
        out, _ = mha.eval()(x, x, x)  # one token: output = x W_v W_proj (biases are zero at init)
        torch.testing.assert_close(out.double(), x.double() @ vo_t, atol=1e-5, rtol=1e-4)
    m = structure_metrics(attention_products(enc))
    assert (m[m["product"] == "qk"]["diag_mean"] > 0).all()
    assert (m[m["product"] == "vo"]["diag_mean"] < 0).all()


def test_same_seed_same_weights_and_dtype_kept():
    a = apply_init(vit(depth=2), "mimetic", seed=5).state_dict()
    b = apply_init(vit(depth=2), "mimetic", seed=5).state_dict()
    c = apply_init(vit(depth=2), "mimetic", seed=6).state_dict()
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["blocks.0.attn.qkv.weight"], c["blocks.0.attn.qkv.weight"])
    for dtype in (torch.float64, torch.bfloat16):
        model = apply_init(vit(depth=1).to(dtype), "mimetic", seed=5)
        assert all(p.dtype == dtype for p in model.parameters())


def test_uniform_noise_has_the_same_variance_but_bounded_support():
    attn = apply_init(Attention(dim=D, num_heads=HEADS), "mimetic-vo", seed=0, dist="uniform")
    vo = attention_layers(attn)[0].read()
    noise = (vo.v.double() @ vo.proj.double() + BETA2 * torch.eye(D)) / ALPHA2
    assert noise.var().item() == pytest.approx(1 / D, rel=0.05)
    assert noise.abs().max().item() <= math.sqrt(3 / D) + 1e-4  # normal noise would exceed it


@pytest.mark.parametrize("call, match", [
    (lambda: apply_init(nn.Sequential(nn.Linear(4, 4)), "mimetic"), "no supported attention layer"),
    (lambda: apply_init(vit(depth=1), "fancy"), r"unknown init 'fancy'.*mimetic-qk"),
    (lambda: apply_init(vit(depth=1), "identity", alpha1=0.1), r"no parameter \['alpha1'\]"),
    (lambda: apply_init(vit(depth=1), "mimetic", alpha1=-0.1), r"alpha1=-0.1 must be >= 0"),
    (lambda: apply_init(vit(depth=1), "mimetic", gamma=1.0), r"no parameter \['gamma'\].*alpha1"),
    (lambda: apply_init(vit(depth=1), "mimetic-qk", alpha2=0.4), r"no parameter \['alpha2'\]"),
    (lambda: apply_init(vit(depth=1), "mimetic", dist="cauchy"), r"dist='cauchy'.*normal"),
    (lambda: apply_init(nn.MultiheadAttention(8, 2, kdim=4, vdim=4), "mimetic"), "cross-attention"),
])
def test_bad_input_raises_a_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_width_not_divisible_by_heads():
    attn = Attention(dim=12, num_heads=3)
    attn.num_heads = 5  # as a foreign module might declare it
    with pytest.raises(ValueError, match=r"width 12 is not divisible by num_heads=5"):
        apply_init(attn, "mimetic")


def test_registry_holds_the_documented_inits():
    assert {"default", "mimetic", "mimetic-qk", "mimetic-vo"} <= set(INITS)
    for init in INITS.values():  # each says what it is and, but for the model's own, where it comes from
        assert init.description and (init.source or init.name == "default"), init.name
