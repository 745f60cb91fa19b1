"""Local checkpoints read by their layout (mimetic.attention._layouts): each layout's planted
products come back exactly; planning finds the layout, heads and widths from the file's header
without torch, and stops an unknown layout naming the parameters it found."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from snakemake.utils import validate

from mimetic import cli
from mimetic.attention._layouts import checkpoint_files, read_shapes
from mimetic.attention.pretrained import check_entry, load_pretrained
from mimetic.attention.structure import products_from_weights
from mimetic.checks import ConfigError, check_config
from test_layout import loaded
from test_pretrained import expected_products, planted

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
D, HEADS, LAYERS = 48, 4, 3
BASE = {"seeds": [0], "arms": {"default": {"init": "default"}},
        "experiments": {"digits": {"dataset": "digits", "model": "vit_digits", "epochs": 2, "batch_size": 256,
                                   "warmup_epochs": 1, "lr": 0.002, "gpus": 0}}}
WHISPER = {role: f"model.encoder.layers.{{layer}}.self_attn.{name}.weight"
           for role, name in (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj"), ("o", "out_proj"))}


def linear(w: torch.Tensor) -> torch.Tensor:
    """W (x @ W) as nn.Linear stores it: its weight is W^T."""
    return w.T.contiguous()


def fused(w: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([w["q"], w["k"], w["v"]], dim=1)  # (d, 3d), columns [q | k | v]: x @ W


# One layer's parameters in each layout's storage, from the planted W_q, W_k, W_v, W_proj (x @ W).
LAYOUTS = {
    "timm": lambda i, w: {f"blocks.{i}.attn.qkv.weight": linear(fused(w)),
                          f"blocks.{i}.attn.proj.weight": linear(w["proj"]), f"blocks.{i}.norm1.weight": torch.ones(D)},
    "gpt2": lambda i, w: {f"transformer.h.{i}.attn.c_attn.weight": fused(w).contiguous(),
                          f"transformer.h.{i}.attn.c_proj.weight": w["proj"].contiguous()},
    "bert": lambda i, w: {f"bert.encoder.layer.{i}.attention.self.{name}.weight": linear(w[role])
                          for role, name in (("q", "query"), ("k", "key"), ("v", "value"))}
    | {f"bert.encoder.layer.{i}.attention.output.dense.weight": linear(w["proj"]),
       f"bert.encoder.layer.{i}.attention.output.dense.bias": torch.zeros(D)},
    # Whisper: the encoder's layers are mapped; the decoder's self-attention (other weights) is left alone.
    "whisper": lambda i, w: {WHISPER[role].format(layer=i): linear(w[key])
                             for role, key in (("q", "q"), ("k", "k"), ("v", "v"), ("o", "proj"))}
    | {WHISPER["q"].format(layer=i).replace("encoder", "decoder"): torch.zeros(D, D)},
    "fused_conv1d": lambda i, w: {f"gpt.blocks.{i}.mix.c_attn.weight": fused(w).contiguous(),
                                  f"gpt.blocks.{i}.mix.c_proj.weight": w["proj"].contiguous()},
}
# What each entry adds to `file`: its mapping, and where the heads come from (config.json or num_heads).
ENTRIES = {
    "timm": ({}, {"num_heads": HEADS}),
    "gpt2": ({"n_head": HEADS}, {}),
    "bert": ({"num_attention_heads": HEADS, "model_type": "bert"}, {}),
    "whisper": ({"encoder_attention_heads": HEADS, "decoder_attention_heads": HEADS}, {"mapping": WHISPER}),
    "fused_conv1d": ({}, {"num_heads": HEADS, "mapping": {"qkv": "gpt.blocks.{layer}.mix.c_attn.weight",
                                                          "o": "gpt.blocks.{layer}.mix.c_proj.weight",
                                                          "conv1d": True}}),
}
NAMES = {"timm": "timm", "gpt2": "GPT-2", "bert": "BERT", "whisper": "mapped", "fused_conv1d": "mapped"}


def plants(seed: int = 0) -> list[dict[str, torch.Tensor]]:
    return [planted(D, HEADS, seed=seed + i) for i in range(LAYERS)]


def state_of(layout: str, weights: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    state = {"embeddings.word_embeddings.weight": torch.randn(10, D)}
    for i, w in enumerate(weights):
        state |= LAYOUTS[layout](i, w)
    return state


def model_folder(folder: Path, state: dict[str, torch.Tensor], config: dict | None,
                 weights: str = "model.safetensors") -> Path:
    """A Hugging Face model folder: config.json (unless None) and the weights, safetensors or torch.save's."""
    folder.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    if weights.endswith(".safetensors"):
        save_file(state, str(folder / weights))
    else:
        torch.save(state, folder / weights)
    return folder


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_gives_the_planted_products(tmp_path, layout, weights):
    """Planning passes on the file's header; extraction gives exactly the products of the planted
    per-head matrices (a transposition or a wrong head split anywhere would change them)."""
    w = plants()
    config, entry = ENTRIES[layout]
    folder = model_folder(tmp_path / layout, state_of(layout, w), config or None, weights)
    check_entry(layout, None, folder, entry.get("num_heads"), entry.get("mapping"))
    source = load_pretrained(None, folder, entry.get("num_heads"), label=layout, mapping=entry.get("mapping"))
    assert source.layout == NAMES[layout] and source.weights[0].num_heads == HEADS
    products = products_from_weights(source.weights)
    qk, vo = expected_products(w, HEADS)
    assert products["qk"].shape == (LAYERS, HEADS, D, D)
    assert torch.equal(products["qk"], qk.float()) and torch.equal(products["vo"], vo.float())


def test_bert_products_are_its_attention_scores(tmp_path):
    """Against BERT's own computation: query/key Linear outputs split view(n, H, k) per head."""
    w = plants(seed=7)
    state = state_of("bert", w)
    products = products_from_weights(load_pretrained(None, model_folder(tmp_path, state, {"num_attention_heads":
                                                                                             HEADS})).weights)
    x, hk = torch.randn(5, D, dtype=torch.float64), D // HEADS
    prefix = "bert.encoder.layer.2.attention."
    q = torch.nn.functional.linear(x, state[prefix + "self.query.weight"].double()).view(5, HEADS, hk)
    k = torch.nn.functional.linear(x, state[prefix + "self.key.weight"].double()).view(5, HEADS, hk)
    for h in range(HEADS):
        torch.testing.assert_close(x @ products["qk"][2, h].double() @ x.T, q[:, h] @ k[:, h].T)
    v = torch.nn.functional.linear(x, state[prefix + "self.value.weight"].double())
    out = torch.nn.functional.linear(v, state[prefix + "output.dense.weight"].double())
    torch.testing.assert_close(x @ products["vo"][2].double(), out)


def test_shapes_are_read_without_loading_tensors(tmp_path):
    """torch.save's zip archives (top level, nested under "model", DDP's prefix), as load_state_dict
    reads them; a legacy pickle is torch's to read (None)."""
    state = state_of("bert", plants())
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "nested.pt")
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    save_file(state, str(tmp_path / "s.safetensors"))
    assert read_shapes([tmp_path / "nested.pt"], "k") == shapes
    assert read_shapes([tmp_path / "s.safetensors"], "k") == shapes
    assert read_shapes([tmp_path / "legacy.pt"], "k") is None


def test_a_sharded_folder_reads_every_shard_and_each_is_an_input(tmp_path):
    w = plants()
    state = state_of("gpt2", w)
    names = sorted(state)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in halves.items():
        save_file({k: state[k] for k in keys}, str(tmp_path / shard))
    weight_map = {k: shard for shard, keys in halves.items() for k in keys}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "config.json").write_text(json.dumps({"n_head": HEADS}))
    check_entry("sharded", "gpt2", tmp_path)
    products = products_from_weights(load_pretrained("gpt2", tmp_path).weights)
    assert torch.equal(products["qk"], expected_products(w, HEADS)[0].float())
    assert checkpoint_files(tmp_path) == [str(tmp_path / s) for s in halves] + [str(tmp_path / "config.json")]


def _bert(tmp_path, config=None, **change) -> Path:
    state = state_of("bert", plants())
    for key, value in change.items():
        state[key] = value
    return model_folder(tmp_path / "bert", state, config)


@pytest.mark.parametrize("make, entry, message", [
    (lambda p: _bert(p, {"num_attention_heads": HEADS}), {"model": None, "mapping": None, "num_heads": 6},
     r"pretrained\.m\.num_heads=6: the model's config\.json says \{'num_attention_heads': 4\}"),
    (lambda p: _bert(p), {}, r"pretrained\.m\.num_heads: required: the checkpoint has no config\.json"),
    (lambda p: _bert(p, {"architecture": "vit_x"}), {},
     r"num_heads: required: .*set num_heads, or set `model` to its timm architecture 'vit_x'"),
    (lambda p: _bert(p, {"encoder_attention_heads": 6, "decoder_attention_heads": 8}), {},
     r"pretrained\.m\.num_heads: required: config\.json gives several head counts"),
    (lambda p: _bert(p, {"num_attention_heads": 5}), {}, r"pretrained\.m\.num_heads: width 48 is not divisible by "
                                                          r"num_heads=5"),
    (lambda p: _bert(p, {"num_attention_heads": HEADS}, **{"bert.encoder.layer.1.attention.self.key.weight":
                                                           torch.zeros(24, D)}),  # grouped keys: not square
     {}, r"pretrained\.m\.file: layer 1's 'bert\.encoder\.layer\.1\.attention\.self\.key\.weight' is \(24, 48\), "
         r"not \(48, 48\)"),
    (lambda p: model_folder(p / "two", state_of("bert", plants()) | {f"teacher.{k}": v for k, v in
                                                                      state_of("bert", plants()).items()},
                            {"num_attention_heads": HEADS}), {},
     r"pretrained\.m\.file: attention layers of more than one layout or prefix \(BERT under 'bert\.', BERT "
     r"under 'teacher\.bert\.'\); add a `mapping`"),
    (lambda p: model_folder(p / "gap", {k: v for k, v in state_of("bert", plants()).items() if ".layer.1." not in k},
                            {"num_attention_heads": HEADS}), {},
     r"BERT attention layers \[0, 2\] under 'bert\.'; expected 0\.\.1"),
    (lambda p: _bert(p), {"num_heads": HEADS, "mapping": {**WHISPER, "q": "model.encoder.q.weight"}},
     r"pretrained\.m\.mapping\.q: 'model\.encoder\.q\.weight' must be a parameter name with \{layer\} once"),
    (lambda p: _bert(p), {"num_heads": HEADS, "mapping": {"q": WHISPER["q"], "k": WHISPER["k"], "o": WHISPER["o"]}},
     r"pretrained\.m\.mapping: give q, k, v and o, or a fused qkv and o; it has \['k', 'o', 'q'\]"),
    (lambda p: _bert(p), {"num_heads": HEADS, "mapping": WHISPER},
     r"pretrained\.m\.mapping: 'model\.encoder\.layers\.\{layer\}\.self_attn\.q_proj\.weight' matches none of the "
     r"checkpoint's 16 parameters, e.g. \['bert\.encoder\.layer\.0\.attention\.output\.dense\.bias'"),
    (lambda p: _bert(p), {"model": "gpt2", "mapping": WHISPER}, r"pretrained\.m\.mapping: only for a `file` without "
                                                                 r"`model`"),
    (lambda p: _bert(p), {"model": "gpt2"}, r"pretrained\.m\.file: no GPT-2 attention weights found"),
    (lambda p: None, {"file": None}, r"pretrained\.m: give `model` \(.*\) or `file`"),
    (lambda p: p / "missing", {}, r"pretrained\.m\.file: checkpoint file '.*missing' does not exist"),
], ids=["heads-disagree", "no-heads", "timm-hint", "several-heads", "indivisible", "not-square", "two-prefixes", "gap",
        "no-layer", "roles", "matches-none", "mapping-with-model", "not-gpt2", "neither", "missing"])
def test_planning_names_the_key_and_what_is_wrong(tmp_path, make, entry, message):
    path = make(tmp_path)
    config = BASE | {"pretrained": {"m": {"file": str(path) if path else None} | entry}}
    with pytest.raises(ConfigError, match=message):
        check(tmp_path, config)


def check(tmp_path: Path, config: dict) -> None:
    """The workflow's planning check on a config file (schema, defaults, then every rule)."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    check_config(yaml.safe_load(path.read_text()), [path], SCHEMA, validate)


def unknown_layout(folder: Path) -> Path:
    """A checkpoint of no built-in layout (separate q/k/v names nobody else uses)."""
    state = {"embed.weight": torch.zeros(10, D), "final_norm.weight": torch.ones(D)}
    for i in range(2):
        for part in ("attn_q", "attn_k", "attn_v", "attn_out", "ffn_up"):
            state[f"enc.{i}.{part}.weight"] = torch.zeros(D, D)
    return model_folder(folder, state, {"num_attention_heads": HEADS})


def test_an_unknown_layout_fails_at_planning_with_the_names_it_found(tmp_path):
    folder = unknown_layout(tmp_path / "odd")
    config = BASE | {"pretrained": {"odd": {"file": str(folder)}}}
    with pytest.raises(ConfigError) as err:
        check(tmp_path, config)
    message = str(err.value)
    assert message.startswith("pretrained.odd.file: no known attention layout (timm 'blocks.{layer}.attn.qkv.weight'; ")
    # the first five attention-like names, in the file's order (safetensors sorts them)
    assert "among its 12 parameters, e.g. ['enc.0.attn_k.weight', 'enc.0.attn_out.weight', 'enc.0.attn_q.weight', " \
           "'enc.0.attn_v.weight', 'enc.1.attn_k.weight'] (+7 more); add a `mapping`" in message
    assert "\n" not in message
    mapping = {"q": "enc.{layer}.attn_q.weight", "k": "enc.{layer}.attn_k.weight", "v": "enc.{layer}.attn_v.weight",
               "o": "enc.{layer}.attn_out.weight"}
    config["pretrained"]["odd"]["mapping"] = mapping
    check(tmp_path, config)  # the mapping the message asks for


def test_the_dry_run_stops_before_any_job(tmp_path):
    folder = unknown_layout(tmp_path / "odd")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(BASE | {"pretrained": {"odd": {"file": str(folder)}}}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                           "--configfile", str(tmp_path / "config.yaml"), "-n", "--cores", "1", "pretrained"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0
    assert "config: pretrained.odd.file: no known attention layout" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()


def test_planning_reads_checkpoints_without_torch(tmp_path):
    """The header of a safetensors folder and the pickle of a torch.save archive, checked whole
    (layout, heads, widths), with none of torch, timm or the plotting libraries loaded."""
    entries = {"bert": {"file": str(model_folder(tmp_path / "bert", state_of("bert", plants()),
                                                 {"num_attention_heads": HEADS}))},
               "whisper": {"file": str(model_folder(tmp_path / "whisper", state_of("whisper", plants()),
                                                    {"encoder_attention_heads": HEADS}, "pytorch_model.bin")),
                           "mapping": WHISPER}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(BASE | {"pretrained": entries}))
    code = ("import yaml; from snakemake.utils import validate; from mimetic import checks; "
            f"config = yaml.safe_load(open({str(path)!r})); validate(config, 'workflow/schemas/config.schema.yaml'); "
            "checks.check(config)")
    assert loaded(code) == []
    broken = dict(entries, whisper=dict(entries["whisper"], num_heads=5))  # the check did read the archive
    path.write_text(yaml.safe_dump(BASE | {"pretrained": broken}))
    with pytest.raises(subprocess.CalledProcessError) as err:
        loaded(code)
    assert "pretrained.whisper.num_heads=5: the model's config.json says" in err.value.stderr


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_planted_pickle_runs_nothing_at_planning_and_is_refused_by_extract(tmp_path):
    """Planning reads no pickled object but a state dict's (the file is left to the job); the job's
    torch.load(weights_only=True) refuses it in one line; a legacy-format file of tensors loads."""
    marker = tmp_path / "ran"
    state = state_of("bert", plants())
    folder = model_folder(tmp_path / "evil", state | {"x": _Payload(marker)}, {"num_attention_heads": HEADS},
                          "pytorch_model.bin")
    check(tmp_path, BASE | {"pretrained": {"evil": {"file": str(folder)}}})
    assert not marker.exists()
    out = ["--products", str(tmp_path / "p.safetensors"), "--metrics", str(tmp_path / "s.csv")]
    with pytest.raises(SystemExit) as err:
        cli.main(["extract", "--file", str(folder), "--label", "evil", *out])
    assert re.fullmatch(r"mimetic extract: pretrained\.evil\.file: checkpoint .*pytorch_model\.bin is refused: it "
                        r"holds the pickled object posix\.system, which could run code when loaded; give a "
                        r"safetensors file or a torch\.save of tensors only", str(err.value))
    assert not marker.exists() and not (tmp_path / "p.safetensors").exists()

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text(json.dumps({"num_attention_heads": HEADS}))
    torch.save(state, legacy / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    check(tmp_path, BASE | {"pretrained": {"legacy": {"file": str(legacy)}}})
    cli.main(["extract", "--file", str(legacy), "--label", "legacy", *out])
    assert (tmp_path / "s.csv").read_text().count("\n") == 1 + LAYERS * (HEADS + 1)


def test_the_rule_gets_the_entry_as_extract_arguments(tmp_path):
    """get_pretrained_args' --mapping: JSON that `mimetic extract` reads back (docs/pretrained.md's Whisper entry)."""
    w = plants()
    folder = model_folder(tmp_path / "whisper", state_of("whisper", w), {"encoder_attention_heads": HEADS})
    out = ["--products", str(tmp_path / "p.safetensors"), "--metrics", str(tmp_path / "s.csv")]
    cli.main(["extract", "--file", str(folder), "--mapping", json.dumps(WHISPER, sort_keys=True), *out])
    from safetensors import safe_open

    with safe_open(str(tmp_path / "p.safetensors"), framework="pt") as f:
        assert f.metadata()["layout"] == "mapped" and f.metadata()["num_heads"] == str(HEADS)
        assert torch.equal(f.get_tensor("vo"), expected_products(w, HEADS)[1].float())
