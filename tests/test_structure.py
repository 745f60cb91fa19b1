"""Attention products and their metrics."""

import math

import pandas as pd
import pytest
import torch

from mimetic.attention.weights import AttentionWeights
from mimetic.attention.structure import matrix_metrics, products_from_weights, structure_metrics


def test_metrics_of_known_matrices():
    d = 16
    eye = matrix_metrics(torch.eye(d))
    assert eye == pytest.approx({"diag_mean": 1.0, "offdiag_abs_mean": 0.0, "identity_cosine": 1.0})
    neg = matrix_metrics(-0.5 * torch.eye(d) + 0.1 * (1 - torch.eye(d)))
    assert neg["diag_mean"] == pytest.approx(-0.5)
    assert neg["offdiag_abs_mean"] == pytest.approx(0.1)
    # <P, I> / (|P| |I|) = -0.5 d / (sqrt(0.25 d + 0.01 (d^2 - d)) sqrt(d))
    expected = -0.5 * d / (math.sqrt(0.25 * d + 0.01 * (d * d - d)) * math.sqrt(d))
    assert neg["identity_cosine"] == pytest.approx(expected)
    assert matrix_metrics(torch.zeros(d, d))["identity_cosine"] == 0.0


def test_products_follow_the_head_layout():
    """Head h's product uses only columns h*k..(h+1)*k of W_q and W_k."""
    d, heads = 6, 2
    q, k = torch.zeros(d, d), torch.zeros(d, d)
    q[:, :3], k[:, :3] = torch.eye(d)[:, :3], torch.eye(d)[:, :3]  # head 0: projection on dims 0..2
    q[:, 3:], k[:, 3:] = -torch.eye(d)[:, 3:], torch.eye(d)[:, 3:]  # head 1: minus projection on 3..5
    v, proj = torch.eye(d) * 2, -torch.eye(d)
    p = products_from_weights([AttentionWeights(q, k, v, proj, heads)])
    assert p["qk"].shape == (1, heads, d, d) and p["vo"].shape == (1, d, d)
    torch.testing.assert_close(p["qk"][0, 0], torch.diag(torch.tensor([1.0, 1, 1, 0, 0, 0])))
    torch.testing.assert_close(p["qk"][0, 1], torch.diag(torch.tensor([0.0, 0, 0, -1, -1, -1])))
    torch.testing.assert_close(p["vo"][0], -2 * torch.eye(d))


def test_metrics_table_is_tidy():
    layers, heads, d = 3, 2, 8
    ws = [AttentionWeights(*(torch.randn(d, d) for _ in range(4)), num_heads=heads) for _ in range(layers)]
    df = structure_metrics(products_from_weights(ws))
    assert len(df) == layers * (heads + 1)
    assert list(df.columns) == ["layer", "head", "product", "diag_mean", "offdiag_abs_mean", "identity_cosine"]
    assert set(df["product"]) == {"qk", "vo"}
    assert df[df["product"] == "vo"]["head"].isna().all()
    assert df[df["product"] == "qk"].groupby("layer")["head"].apply(list).tolist() == [[0, 1]] * layers
    assert isinstance(df["head"].dtype, pd.Int64Dtype)
