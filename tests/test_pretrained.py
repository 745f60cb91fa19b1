"""Extraction from checkpoints built here: planted products come back exactly, per head, with
their signs and layout, through timm's loader (safetensors and .pt) and the GPT-2 reader; and a
real one, MiniLM-L6 (tests/minilm.py), through the workflow's structure rules end to end."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from safetensors.torch import save_file

from mimetic import cli
from mimetic.attention.weights import attention_layers
from mimetic.attention.pretrained import (NotACheckpoint, PretrainedUnavailable, check_entry, gpt2_weights,
                                          pretrained_weights)
from mimetic.attention.structure import products_from_weights, structure_metrics

VIT = "vit_tiny_patch16_224"  # timm architecture: d = 192, 3 heads of 64, 12 layers
GPT2_D, GPT2_HEADS, GPT2_LAYERS = 48, 4, 3


def planted(d: int, heads: int, seed: int) -> dict[str, torch.Tensor]:
    """Integer-valued W_q, W_k, W_v, W_proj (x @ W convention), so every product is exact in
    float32. W_k^h = W_q^h + S makes each Q/K product a positive-diagonal R R^T plus an
    asymmetric R S^T; W_proj = -W_v^T + S' gives V/Proj a negative diagonal, also asymmetric:
    a transposition anywhere changes the products."""
    g = torch.Generator().manual_seed(seed)

    def ints(*shape, low=-2, high=3):
        return torch.randint(low, high, shape, generator=g).float()

    q = ints(d, d)
    sparse = ints(d, d) * (torch.rand(d, d, generator=g) < 0.05)
    v = ints(d, d)
    proj = -v.T + ints(d, d) * (torch.rand(d, d, generator=g) < 0.05)
    return {"q": q, "k": q + sparse, "v": v, "proj": proj}


def expected_products(layers: list[dict[str, torch.Tensor]], heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The planted products, computed in int64 from the planted matrices: per head, the head's
    columns of W_q times the same columns of W_k, transposed."""
    qk, vo = [], []
    for w in layers:
        q, k = w["q"].long(), w["k"].long()
        hk = q.shape[1] // heads
        qk.append(torch.stack([q[:, h * hk:(h + 1) * hk] @ k[:, h * hk:(h + 1) * hk].T for h in range(heads)]))
        vo.append(w["v"].long() @ w["proj"].long())
    return torch.stack(qk), torch.stack(vo)


@pytest.fixture(scope="module")
def vit_checkpoint(tmp_path_factory):
    """A timm ViT with planted attention weights, saved as safetensors and as a .pt state dict."""
    torch.manual_seed(0)
    model = timm.create_model(VIT, pretrained=False)
    layers = attention_layers(model)
    plants = [planted(layer.dim, layer.num_heads, seed=i) for i, layer in enumerate(layers)]
    for layer, w in zip(layers, plants):
        layer.write(**w)
    folder = tmp_path_factory.mktemp("vit")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "vit.safetensors"))
    torch.save(state, folder / "vit.pt")
    return folder, plants, model


@pytest.mark.parametrize("name", ["vit.safetensors", "vit.pt"])
def test_vit_checkpoint_products_are_the_planted_ones(vit_checkpoint, name):
    folder, plants, _ = vit_checkpoint
    weights = pretrained_weights(VIT, folder / name, label="tiny")
    products = products_from_weights(weights)
    qk, vo = expected_products(plants, heads=3)
    assert products["qk"].shape == (12, 3, 192, 192) and products["vo"].shape == (12, 192, 192)
    assert torch.equal(products["qk"], qk.float())
    assert torch.equal(products["vo"], vo.float())


def test_vit_checkpoint_with_another_head_and_a_mismatched_one(tmp_path):
    """A fine-tuned checkpoint (10 classes, no head at all) loads strictly; one whose attention
    does not fit the architecture fails instead of leaving random weights."""
    torch.manual_seed(1)
    model = timm.create_model(VIT, pretrained=False, num_classes=10)
    layer = attention_layers(model)[0]
    w = planted(layer.dim, layer.num_heads, seed=5)
    layer.write(**w)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp_path / "ft.safetensors"))
    headless = {k: v for k, v in state.items() if not k.startswith("head.")}
    torch.save({"state_dict": headless}, tmp_path / "headless.pth")  # nested, as training scripts save
    qk, vo = expected_products([w], heads=3)
    for name in ("ft.safetensors", "headless.pth"):
        products = products_from_weights(pretrained_weights(VIT, tmp_path / name)[:1])
        assert torch.equal(products["qk"], qk.float()) and torch.equal(products["vo"], vo.float()), name
    del headless["blocks.3.attn.qkv.weight"]
    save_file(headless, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ValueError, match=r"pretrained\.tiny\.file: checkpoint .*broken\.safetensors does not fit "
                                         r"'vit_tiny_patch16_224' \(Missing key.*blocks\.3\.attn\.qkv\.weight"):
        pretrained_weights(VIT, tmp_path / "broken.safetensors", label="tiny")


def test_vit_products_give_the_models_attention_scores(vit_checkpoint):
    """Layout against timm's own forward pass: x qk[h] x^T are head h's attention logits
    (before the 1/sqrt(k) scale) and x vo is what proj(v(x)) computes."""
    folder, _, model = vit_checkpoint
    products = products_from_weights(pretrained_weights(VIT, folder / "vit.safetensors"))
    attn = model.blocks[5].attn
    x = torch.randn(7, 192, dtype=torch.float64)
    with torch.no_grad():
        qkv = torch.nn.functional.linear(x, attn.qkv.weight.double()).reshape(7, 3, 3, 64)  # tokens, qkv, head, k
        for h in range(3):
            scores = qkv[:, 0, h] @ qkv[:, 1, h].T
            torch.testing.assert_close(x @ products["qk"][5, h].double() @ x.T, scores)
        vo = torch.nn.functional.linear(qkv[:, 2].reshape(7, 192), attn.proj.weight.double())
        torch.testing.assert_close(x @ products["vo"][5].double(), vo)


def test_metrics_flag_the_planted_diagonals(vit_checkpoint):
    folder, _, _ = vit_checkpoint
    m = structure_metrics(products_from_weights(pretrained_weights(VIT, folder / "vit.pt")))
    qk, vo = m[m["product"] == "qk"], m[m["product"] == "vo"]
    # diag(R R^T) = sum of squares ~ 2 per entry; off-diagonal terms cancel on average.
    assert (qk["diag_mean"] > 50).all() and (qk["identity_cosine"] > 0.3).all()
    assert (vo["diag_mean"] < -200).all() and (vo["identity_cosine"] < -0.3).all()
    assert (qk["diag_mean"] > 3 * qk["offdiag_abs_mean"]).all()


def gpt2_state_dict(prefix: str = "") -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """A GPT-2-layout state dict (Conv1D: y = x @ W + b) with planted projections."""
    plants = [planted(GPT2_D, GPT2_HEADS, seed=100 + i) for i in range(GPT2_LAYERS)]
    state = {f"{prefix}wte.weight": torch.randn(10, GPT2_D)}
    for i, w in enumerate(plants):
        state[f"{prefix}h.{i}.attn.c_attn.weight"] = torch.cat([w["q"], w["k"], w["v"]], dim=1)  # d x 3d
        state[f"{prefix}h.{i}.attn.c_attn.bias"] = torch.randn(3 * GPT2_D)
        state[f"{prefix}h.{i}.attn.c_proj.weight"] = w["proj"].contiguous()
        state[f"{prefix}h.{i}.attn.c_proj.bias"] = torch.randn(GPT2_D)
    return state, plants


@pytest.mark.parametrize("prefix", ["", "transformer."])
def test_gpt2_products_are_the_planted_ones(tmp_path, prefix):
    state, plants = gpt2_state_dict(prefix)
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    products = products_from_weights(pretrained_weights("gpt2", path, num_heads=GPT2_HEADS))
    qk, vo = expected_products(plants, GPT2_HEADS)
    assert torch.equal(products["qk"], qk.float())
    assert torch.equal(products["vo"], vo.float())


def test_gpt2_layout_matches_its_attention_and_a_transpose_slip_fails(tmp_path):
    """Head h's logits the way GPT-2 computes them: qkv = x @ c_attn + b, split in three,
    heads from view(n, H, k). A reader that transposed the Conv1D weights (nn.Linear habit)
    must give other products."""
    state, _ = gpt2_state_dict()
    path = tmp_path / "gpt2.pt"
    torch.save(state, path)
    products = products_from_weights(pretrained_weights("gpt2", path, num_heads=GPT2_HEADS))
    w, hk = state["h.1.attn.c_attn.weight"].double(), GPT2_D // GPT2_HEADS
    x = torch.randn(5, GPT2_D, dtype=torch.float64)
    q, k, v = (x @ w).split(GPT2_D, dim=-1)
    for h in range(GPT2_HEADS):
        scores = q.view(5, GPT2_HEADS, hk)[:, h] @ k.view(5, GPT2_HEADS, hk)[:, h].T
        torch.testing.assert_close(x @ products["qk"][1, h].double() @ x.T, scores)
    torch.testing.assert_close(x @ products["vo"][1].double(), v @ state["h.1.attn.c_proj.weight"].double())

    slipped = products_from_weights([type(a)(q=a.q.T, k=a.k.T, v=a.v.T, proj=a.proj.T, num_heads=a.num_heads)
                                     for a in gpt2_weights(state, GPT2_HEADS)])
    assert not torch.equal(slipped["qk"], products["qk"])
    assert not torch.equal(slipped["vo"], products["vo"])


def test_gpt2_metrics_flag_the_planted_diagonals():
    state, _ = gpt2_state_dict()
    m = structure_metrics(products_from_weights(gpt2_weights(state, GPT2_HEADS)))
    assert (m[m["product"] == "qk"]["diag_mean"] > 0).all()
    assert (m[m["product"] == "vo"]["diag_mean"] < 0).all()


def test_gpt2_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no GPT-2 attention weights"):
        gpt2_weights({"wte.weight": torch.zeros(2, 2)}, 12)
    state, _ = gpt2_state_dict()
    save_file(state, str(tmp_path / "gpt2.safetensors"))
    with pytest.raises(ValueError, match="not divisible by num_heads=5"):
        pretrained_weights("gpt2", tmp_path / "gpt2.safetensors", num_heads=5)
    with pytest.raises(ValueError, match=r"pretrained\.tiny\.num_heads: only GPT-2"):
        pretrained_weights(VIT, tmp_path / "gpt2.safetensors", num_heads=3, label="tiny")
    with pytest.raises(FileNotFoundError, match=r"pretrained\.small\.file"):
        pretrained_weights("gpt2", tmp_path / "missing.safetensors", label="small")
    with pytest.raises(NotACheckpoint, match=r"pretrained\.small\.file: .* is a folder"):
        pretrained_weights("gpt2", tmp_path, label="small")
    with pytest.raises(ValueError, match=r"pretrained\.small\.num_heads=0: must be >= 1"):
        pretrained_weights("gpt2", tmp_path / "gpt2.safetensors", num_heads=0, label="small")


class _Payload:
    """Unpickling it runs `touch marker`: what a planted checkpoint does to a loader that unpickles anything."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("model, name, nest, legacy", [
    ("gpt2", "evil.pt", None, False),
    (VIT, "evil.bin", "state_dict", False),  # nested, as training scripts save
    (VIT, "evil.pth", "model", True),  # torch.save's pre-1.6 pickle format
])
def test_a_planted_checkpoint_is_refused_in_one_line_and_runs_nothing(tmp_path, model, name, nest, legacy):
    """A `pretrained: {file: ...}` entry goes to `mimetic extract --file` (workflow/rules/pretrained.smk):
    the file is read with weights_only=True whatever timm's version, and refused naming the key,
    the file and the pickled global; the payload never runs."""
    marker = tmp_path / "ran"
    state = {"h.0.attn.c_attn.weight": torch.zeros(4, 12), "x": _Payload(marker)}
    path = tmp_path / name
    torch.save({nest: state} if nest else state, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(SystemExit) as err:
        cli.main(["extract", "--model", model, "--file", str(path), "--label", "planted", *outputs(tmp_path)])
    message = str(err.value)
    assert message == (f"mimetic extract: pretrained.planted.file: checkpoint {path} is refused: it holds the pickled "
                       "object posix.system, which could run code when loaded; give a safetensors file or a "
                       "torch.save of tensors only")
    assert not marker.exists() and not (tmp_path / "products.safetensors").exists()


@pytest.mark.parametrize("content, message", [
    (b"", r"is not a checkpoint \(it is empty\)"),
    (b"layer,head\n0,1\n", r"is not a checkpoint \(neither safetensors nor torch.save's\)"),
    (torch.zeros(3), "holds a Tensor, not a state dict"),
    ({"h.0.attn.c_attn.weight": [1.0]}, "is no state dict: its entry 'h.0.attn.c_attn.weight' is a list, not a tensor"),
])
def test_a_file_that_is_no_state_dict_is_said_so(tmp_path, content, message):
    path = tmp_path / "model.safetensors"  # the name does not decide: the first bytes do
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(NotACheckpoint, match=rf"^pretrained\.x\.file: checkpoint {re.escape(str(path))} {message}"):
        pretrained_weights("gpt2", path, label="x")


def test_wrapper_prefixes_are_stripped_and_a_legacy_file_loads(tmp_path):
    """DDP's `module.` and torch.compile's `_orig_mod.` come off, as timm's loader took them off."""
    state, plants = gpt2_state_dict()
    torch.save({"model": {f"_orig_mod.module.{k}": v for k, v in state.items()}}, tmp_path / "gpt2.pt",
               _use_new_zipfile_serialization=False)
    products = products_from_weights(pretrained_weights("gpt2", tmp_path / "gpt2.pt", num_heads=GPT2_HEADS))
    assert torch.equal(products["qk"], expected_products(plants, GPT2_HEADS)[0].float())


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """The hub client as it is without a network: offline mode, an empty cache."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return tmp_path / "hub-cache"


@pytest.mark.parametrize("model", ["vit_tiny_patch16_224.augreg_in21k_ft_in1k", "gpt2"])
def test_offline_without_a_file_names_model_cache_and_key(offline, model):
    with pytest.raises(PretrainedUnavailable) as err:
        pretrained_weights(model, label="tiny")
    message = str(err.value)
    assert repr(model) in message and str(offline) in message and "`pretrained.tiny.file`" in message


def test_cli_extract_offline_fails_with_one_message(offline, capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(["extract", "--model", "deit_tiny_patch16_224.fb_in1k", "--label", "deit", *outputs("unused")])
    assert "deit_tiny_patch16_224.fb_in1k" in str(err.value) and "pretrained.deit.file" in str(err.value)


def test_unknown_timm_name_is_not_mistaken_for_offline():
    with pytest.raises(ValueError, match="not a timm model name"):
        pretrained_weights("vit_nonexistent_patch16_224")


def test_cli_extract_writes_products_and_metrics(vit_checkpoint, tmp_path):
    folder, plants, _ = vit_checkpoint
    cli.main(["extract", "--model", VIT, "--file", str(folder / "vit.safetensors"), *outputs(tmp_path)])
    from safetensors.torch import load_file

    products = load_file(str(tmp_path / "products.safetensors"))
    qk, vo = expected_products(plants, heads=3)
    assert torch.equal(products["qk"], qk.float()) and torch.equal(products["vo"], vo.float())
    metrics = (tmp_path / "structure.csv").read_text().splitlines()
    assert metrics[0] == "layer,head,product,diag_mean,offdiag_abs_mean,identity_cosine"
    assert len(metrics) == 1 + 12 * (3 + 1)


def test_run_model_rebuilds_the_initial_and_loads_the_final_weights(tmp_path):
    """A finished run: init is exactly what build_model gave the run, final what it saved."""
    from mimetic.train.models import build_model, run_model
    from mimetic.train.recipe import TrainConfig
    from mimetic.attention.structure import attention_products

    cfg = TrainConfig(dataset="digits", model="vit_digits", init="mimetic", seed=3).validate()
    start = build_model(cfg, num_classes=10, in_chans=1)
    final = {k: v + 0.01 for k, v in start.state_dict().items()}  # "training"
    save_file(final, str(tmp_path / "final.safetensors"))
    (tmp_path / "summary.json").write_text(json.dumps({"config": cfg.to_dict()}))

    summary, weights = json.loads((tmp_path / "summary.json").read_text()), tmp_path / "final.safetensors"
    for stage, expected in (("init", start.state_dict()), ("final", final)):
        got = run_model(summary, weights, stage).state_dict()
        assert all(torch.equal(got[k], expected[k]) for k in expected), stage
    init = run_model(summary, weights, "init")
    assert structure_metrics(attention_products(init))["diag_mean"].abs().gt(0.1).all()


def outputs(folder):
    return ["--products", f"{folder}/products.safetensors", "--metrics", f"{folder}/structure.csv"]


def figure(stem):
    return [f"{stem}.png", f"{stem}.pdf"]


def _is_figure(png, min_bytes=20_000):
    pdf = png.with_suffix(".pdf")
    return (png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > min_bytes
            and pdf.read_bytes()[:5] == b"%PDF-")


def test_structure_figures_render_from_the_checkpoints(vit_checkpoint, tmp_path):
    """Every figure, from extracted checkpoints (the ViT's 12 x 4 heatmap grid is left out: slow)."""
    folder, _, _ = vit_checkpoint
    gpt2_path = tmp_path / "gpt2.safetensors"
    save_file(gpt2_state_dict()[0], str(gpt2_path))
    sources = {"vit": folder / "vit.safetensors", "gpt2": gpt2_path}
    for label, path in sources.items():
        model, heads = (VIT, None) if label == "vit" else ("gpt2", GPT2_HEADS)
        cli.main(["extract", "--model", model, "--file", str(path), *outputs(tmp_path / label)]
                 + (["--num-heads", str(heads)] if heads else []))
    figures = tmp_path / "figures"
    cli.main(["plot-structure", "--labels", *sources, "--products",
              *(str(tmp_path / label / "products.safetensors") for label in sources),
              "--metrics", *(str(tmp_path / label / "structure.csv") for label in sources),
              "--heatmaps-of", "gpt2", "--heatmaps", *figure(figures / "gpt2_heatmaps"), "--crop", "0",
              "--profile", *figure(figures / "profile"), "--compare", *figure(figures / "compare"),
              "--compare-crop", "16", "--title", "planted"])
    for name in ("gpt2_heatmaps", "profile", "compare"):
        assert _is_figure(figures / f"{name}.png"), name


@pytest.mark.parametrize("args, message", [
    (["--labels", "a", "b", "--products", "a.safetensors"], r"one file per --labels \(2\)"),
    (["--labels", "a", "--products", "a.safetensors", "--heatmaps-of", "a", "b", "--heatmaps", "1.png", "2.png",
      "3.png"], "the same number of files"),
])
def test_plot_structure_refuses_lists_that_do_not_pair_up(args, message, tmp_path):
    with pytest.raises(SystemExit, match=message):
        cli.main(["plot-structure", *args])


def test_configs_validate_and_get_the_structure_defaults():
    """Both shipped configs validate; the new sections default so older configs still do."""
    import yaml
    from snakemake.utils import validate

    root = Path(__file__).parents[1]
    schema = str(root / "workflow" / "schemas" / "config.schema.yaml")
    for name in ("config.yaml", "quickstart.yaml"):
        config = yaml.safe_load((root / "config" / name).read_text())
        validate(config, schema)
        assert config["structure"] == {"seed": None, "crop": 64, "compare_crop": 32, "reference": {}}
    assert config["pretrained"] == {}  # the quickstart downloads nothing
    paper = yaml.safe_load((root / "config" / "config.yaml").read_text())
    validate(paper, schema)
    assert paper["pretrained"]["gpt2"] == {"model": "gpt2", "file": None, "num_heads": None, "mapping": None}


def _recomputed_metrics(p: np.ndarray) -> dict[str, float]:
    """Diagonal mean, mean |off-diagonal| and cosine to I of one matrix, in float64 numpy."""
    d, diag = p.shape[-1], np.diagonal(p)
    off = (np.abs(p).sum() - np.abs(diag).sum()) / (d * d - d)
    return {"diag_mean": diag.mean(), "offdiag_abs_mean": off, "identity_cosine": diag.sum() / (np.linalg.norm(p)
                                                                                                 * np.sqrt(d))}


@pytest.fixture(scope="module")
def minilm_workflow(tmp_path_factory):
    """The workflow's `pretrained` target on a config of two `file:` entries without `model`: the
    real MiniLM-L6 (a Hugging Face folder, BERT layout) and a planted 3-layer GPT-2 folder."""
    import subprocess
    import sys

    import yaml

    from minilm import model_folder

    folder = model_folder()
    work = tmp_path_factory.mktemp("minilm")
    (work / "gpt2").mkdir()
    save_file(gpt2_state_dict("transformer.")[0], str(work / "gpt2" / "model.safetensors"))
    (work / "gpt2" / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_head": GPT2_HEADS}))
    config = {"seeds": [0], "arms": {"default": {"init": "default"}},
              "experiments": {"digits": {"dataset": "digits", "model": "vit_digits", "epochs": 2, "batch_size": 256,
                                         "warmup_epochs": 1, "lr": 0.002, "gpus": 0}},
              "pretrained": {"minilm": {"file": str(folder)}, "planted_gpt2": {"file": "gpt2"}}}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the workflow sets its own
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(work),
                           "--configfile", str(work / "config.yaml"), "--cores", "2", "pretrained"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work, folder


def test_minilm_end_to_end_gives_the_products_of_its_own_tensors(minilm_workflow):
    """The structure rules on a real checkpoint: every figure, and products and statistics equal
    to this test's recomputation from the raw tensors, split into heads as BERT's forward does
    (the query/key outputs viewed (tokens, heads, head width))."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    import minilm

    work, folder = minilm_workflow
    for stem in ("pretrained/minilm_heatmaps", "pretrained/planted_gpt2_heatmaps", "pretrained_profile"):
        assert _is_figure(work / "results/figures" / f"{stem}.png", min_bytes=10_000), stem
    raw = {k: v.astype(np.float64) for k, v in load_file(str(folder / "model.safetensors")).items()}
    products = work / "results/pretrained/minilm/products.safetensors"
    with safe_open(str(products), framework="numpy") as f:
        assert f.metadata()["layout"] == "BERT" and f.metadata()["num_heads"] == str(minilm.HEADS)
        qk, vo = f.get_tensor("qk"), f.get_tensor("vo")
    assert qk.shape == (minilm.LAYERS, minilm.HEADS, minilm.WIDTH, minilm.WIDTH)
    table = pd.read_csv(work / "results/pretrained/minilm/structure.csv")
    hk = minilm.WIDTH // minilm.HEADS
    for layer in range(minilm.LAYERS):
        w = {n: raw[f"encoder.layer.{layer}.attention.{n}.weight"] for n in
             ("self.query", "self.key", "self.value", "output.dense")}
        # nn.Linear: y = x @ weight.T, so the score form of head h is Wq.T[:, h] (Wk.T[:, h]).T
        q, k = w["self.query"].T.reshape(minilm.WIDTH, minilm.HEADS, hk), w["self.key"].T.reshape(
            minilm.WIDTH, minilm.HEADS, hk)
        expected = {("qk", h): q[:, h] @ k[:, h].T for h in range(minilm.HEADS)}
        expected[("vo", None)] = w["self.value"].T @ w["output.dense"].T
        for (product, head), p in expected.items():
            got = qk[layer, head] if product == "qk" else vo[layer]
            np.testing.assert_allclose(got, p, rtol=1e-4, atol=1e-5 * np.abs(p).max())
            row = table[(table["layer"] == layer) & (table["product"] == product)
                        & (table["head"].isna() if head is None else table["head"] == head)]
            assert len(row) == 1
            for metric, value in _recomputed_metrics(p).items():
                assert row[metric].item() == pytest.approx(value, rel=1e-4, abs=1e-6), (layer, head, metric)
    assert len(table) == minilm.LAYERS * (minilm.HEADS + 1)


def test_minilm_planning_reads_its_layout_from_the_header():
    """Planning's view of the same folder, without torch: BERT, its 6 layers of width 384, 12 heads
    from config.json; a wrong head count stops it."""
    from mimetic.attention._layouts import find_layout, folder_config, head_count, read_shapes, weight_files

    import minilm

    folder = minilm.model_folder()
    found = find_layout(read_shapes(weight_files(folder, "f"), "f"), key="pretrained.minilm")
    assert (found.layout.name, len(found.layers), found.width) == ("BERT", minilm.LAYERS, minilm.WIDTH)
    assert head_count(folder_config(folder, "f"), None, "pretrained.minilm") == minilm.HEADS
    with pytest.raises(ValueError, match=r"pretrained\.minilm\.num_heads=8: the model's config\.json says "
                                         r"\{'num_attention_heads': 12\}"):
        check_entry("minilm", None, folder, num_heads=8)


def test_the_profile_of_models_of_different_depths_shares_a_relative_depth_axis():
    from mimetic.report.structure_figures import _depth_axis

    metrics = pd.DataFrame({"model": ["a"] * 3 + ["b"] * 6, "layer": [0, 1, 2, 0, 1, 2, 3, 4, 5]})
    df, label = _depth_axis(metrics, "model")
    assert label.startswith("relative depth") and df["layer"].tolist() == [0, 0.5, 1, 0, 0.2, 0.4, 0.6, 0.8, 1]
    same, label = _depth_axis(metrics[metrics["model"] == "b"], "model")
    assert label == "layer" and same["layer"].tolist() == [1, 2, 3, 4, 5, 6]
