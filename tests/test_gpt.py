"""The language-model experiment's GPT (transformers' GPT-2 layout): its own init as transformers
draws it, and the attention inits on its Conv1D weights, checked from the raw c_attn / c_proj
tensors and through its own attention module."""

import math

import numpy as np
import pytest
import torch

from mimetic import apply_init
from mimetic.attention._mimetic import qk_target, vo_target
from mimetic.train.gpt import build_gpt, gpt_config

transformers = pytest.importorskip("transformers")
VOCAB = 65  # tiny Shakespeare's characters


def gpt(seed=0, name="gpt_char_tiny"):
    torch.manual_seed(seed)
    return build_gpt(name, VOCAB)


def raw(block):
    """W_q, W_k, W_v, W_proj of one block straight from the Conv1D weights (y = x @ W + b; c_attn's
    columns [q | k | v])."""
    w, p = block.attn.c_attn.weight.detach().double(), block.attn.c_proj.weight.detach().double()
    d = p.shape[0]
    return w[:, :d], w[:, d:2 * d], w[:, 2 * d:], p


def truncate(a, k):
    u, s, vt = np.linalg.svd(a)
    return (u[:, :k] * s[:k]) @ vt[:k]


def test_default_is_transformers_own_init_for_the_same_seed():
    ours = gpt(5).state_dict()
    torch.manual_seed(5)
    theirs = transformers.GPT2LMHeadModel(gpt_config("gpt_char_tiny", VOCAB)).state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    model = apply_init(gpt(5), "default", seed=5)
    assert all(torch.equal(model.state_dict()[k], ours[k]) for k in ours)
    # GPT-2's scheme: normal 0.02, the residual projections 0.02 / sqrt(2 n_layer)
    cfg = gpt_config("gpt_char_tiny", VOCAB)
    assert ours["transformer.h.0.attn.c_attn.weight"].std().item() == pytest.approx(0.02, rel=0.05)
    proj = torch.cat([ours[f"transformer.h.{i}.attn.c_proj.weight"].flatten() for i in range(cfg.n_layer)])
    assert proj.std().item() == pytest.approx(0.02 / math.sqrt(2 * cfg.n_layer), rel=0.05)


def test_mimetic_products_on_the_gpt2_layout_from_the_raw_weights():
    """The documented draw order regenerates each layer's targets; the products are computed here
    from c_attn's column blocks and c_proj, so a transposition slip fails."""
    model = apply_init(gpt(), "mimetic", seed=3)
    cfg = model.config
    d, heads = cfg.n_embd, cfg.n_head
    k = d // heads
    gen = torch.Generator().manual_seed(3)
    for block in model.transformer.h:
        qk_t = [qk_target(d, 0.7, 0.7, gen) for _ in range(heads)]
        vo_t = vo_target(d, 0.4, 0.4, gen)
        q, kk, v, p = raw(block)
        for h in range(heads):
            cols = slice(h * k, (h + 1) * k)
            np.testing.assert_allclose((q[:, cols] @ kk[:, cols].T).numpy(), truncate(qk_t[h].numpy(), k), atol=1e-5)
        np.testing.assert_allclose((v @ p).numpy(), vo_t.numpy(), atol=1e-5)
        assert not np.allclose((v @ p).numpy(), vo_t.T.numpy(), atol=1e-3)
        assert not np.allclose((p @ v).numpy(), vo_t.numpy(), atol=1e-3)


def test_mimetic_vo_through_gpt2s_own_attention_module():
    """One token attends only to itself: GPT2Attention's output is x W_v W_proj (its biases are zero at init)."""
    model = apply_init(gpt(), "mimetic-vo", seed=4).eval()
    d = model.config.n_embd
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 1, d)
    for block in model.transformer.h:
        vo_t = vo_target(d, 0.4, 0.4, gen)
        with torch.no_grad():
            out = block.attn(x)[0]
        torch.testing.assert_close(out.double(), x.double() @ vo_t, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("init, changed", [("mimetic", {"q", "k", "v", "proj"}), ("mimetic-qk", {"q", "k"}),
                                           ("mimetic-vo", {"v", "proj"})])
def test_an_init_on_the_gpt_changes_only_its_attention_parts(init, changed):
    base, model = gpt(2).state_dict(), apply_init(gpt(2), init, seed=2).state_dict()
    d = gpt_config("gpt_char_tiny", VOCAB).n_embd
    seen = set()
    for name, t in model.items():
        if name.endswith("attn.c_attn.weight"):
            seen |= {p for i, p in enumerate("qkv") if not torch.equal(t[:, i * d:(i + 1) * d],
                                                                       base[name][:, i * d:(i + 1) * d])}
        elif name.endswith("attn.c_proj.weight"):
            seen |= set() if torch.equal(t, base[name]) else {"proj"}
        else:
            assert torch.equal(t, base[name]), name
    assert seen == changed


def test_vo_only_is_the_published_block_structure_plus_noise():
    """Per head, V's diagonal block +sqrt(0.05) I and the output projection's -sqrt(0.05) I, then
    N(0, 0.01^2) on every entry of both (fresh per layer and matrix); Q and K untouched."""
    base = gpt(1)
    model = apply_init(gpt(1), "vo-only", seed=1)
    d, heads = model.config.n_embd, model.config.n_head
    k = d // heads
    draws = []
    for block, own in zip(model.transformer.h, base.transformer.h):
        q, kk, v, p = raw(block)
        q0, k0, _, _ = raw(own)
        assert torch.equal(q, q0) and torch.equal(kk, k0)
        for w, sign in ((v, 1.0), (p, -1.0)):
            blocks = torch.block_diag(*[torch.eye(k, dtype=torch.float64)] * heads) * sign * math.sqrt(0.05)
            noise = w - blocks
            assert abs(noise.mean().item()) < 2e-3 and noise.std().item() == pytest.approx(0.01, rel=0.05)
            draws.append(noise.flatten())
        assert torch.diagonal(v @ p).mean().item() == pytest.approx(-0.05, abs=0.003)
    corr = torch.corrcoef(torch.stack(draws))
    assert (corr - torch.eye(len(draws), dtype=torch.float64)).abs().max() < 0.1  # fresh noise each time


def test_the_sign_of_each_product_is_a_parameter():
    """GPT-2's own signs differ from a ViT's: a negative beta flips its product (here V/Proj to +I)."""
    model = apply_init(gpt(), "mimetic", seed=6, beta2=-0.4)
    for block in model.transformer.h:
        q, kk, v, p = raw(block)
        assert torch.diagonal(v @ p).mean().item() == pytest.approx(0.4, abs=0.02)
        assert torch.diagonal(q @ kk.T).mean().item() > 0.3  # Q/K keeps its +I
