"""Which attention layout a checkpoint has, from its parameter names and shapes alone, and where
its files are.

Planning (`mimetic.checks`) runs this before any job, so nothing here imports torch: a
safetensors header is JSON after an 8-byte length, and a torch.save zip archive's names and
shapes come from its pickle, read by an unpickler that builds nothing but dicts and shapes (any
other object stops it: the file is then left to the job's torch.load(weights_only=True)).

A layout is one parameter-name pattern per projection, `{layer}` standing for the layer index:
q, k, v and o, or a fused qkv and o. The built-in ones may sit under any prefix (`bert.`,
`transformer.`, `model.`); a user's mapping is matched as written. nn.Linear stores a weight
(out, in) = W^T of the x @ W convention; GPT-2's Conv1D stores W (in, out) itself (`conv1d`).
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A Hugging Face model folder's weights, in the order they are looked for: one file, or an index of shards.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# config.json's head counts, by model family (BERT, GPT-2, timm-style, encoder-decoders like Whisper).
HEAD_KEYS = ("num_attention_heads", "n_head", "num_heads", "encoder_attention_heads", "decoder_attention_heads")
WRAPPERS = ("module.", "_orig_mod.")  # DDP's and torch.compile's key prefixes, in either order (timm strips them)
ROLES = ("q", "k", "v", "qkv", "o")
_ATTENTION_WORDS = ("attn", "attention", "query", "key", "value", "qkv", "_proj")
Shapes = Mapping[str, Sequence[int]]


class NotACheckpoint(ValueError):
    """A local checkpoint file that is refused or holds no state dict; the message names it and what to do."""


class LayoutError(ValueError):
    """A checkpoint whose attention layout is unknown, ambiguous or not square self-attention, or a
    mapping that does not fit it; the message starts with the config key to set."""


@dataclass(frozen=True)
class Layout:
    name: str  # what the figures call it
    patterns: Mapping[str, str]  # role -> parameter name with `{layer}`
    conv1d: bool = False  # weights stored (in, out), y = x @ W (GPT-2's Conv1D); else nn.Linear's (out, in)

    @property
    def fused(self) -> bool:
        return "qkv" in self.patterns

    @property
    def first(self) -> str:
        return "qkv" if self.fused else "q"


LAYOUTS = {
    "timm": Layout("timm", {"qkv": "blocks.{layer}.attn.qkv.weight", "o": "blocks.{layer}.attn.proj.weight"}),
    "gpt2": Layout("GPT-2", {"qkv": "h.{layer}.attn.c_attn.weight", "o": "h.{layer}.attn.c_proj.weight"}, conv1d=True),
    "bert": Layout("BERT", {r: f"encoder.layer.{{layer}}.attention.self.{n}.weight"
                            for r, n in (("q", "query"), ("k", "key"), ("v", "value"))}
                   | {"o": "encoder.layer.{layer}.attention.output.dense.weight"}),
}


@dataclass(frozen=True)
class Found:
    """A checkpoint's attention: its layout, each layer's parameter names (role -> name), its width."""

    layout: Layout
    layers: tuple[Mapping[str, str], ...]
    width: int


# --- files -----------------------------------------------------------------------------------------

def weight_files(path: str | os.PathLike, key: str) -> list[Path]:
    """The weight files of a `file:` entry: the file itself, or a Hugging Face model folder's
    (WEIGHT_FILES; an index names every shard). `key` (`pretrained.<label>.file`) starts each error."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise FileNotFoundError(f"{key}: checkpoint file {str(path)!r} does not exist; give a safetensors or "
                                "PyTorch state-dict file or a Hugging Face model folder, or remove the key to use "
                                "the hub")
    name = next((n for n in WEIGHT_FILES if (path / n).is_file()), None)
    if name is None:
        raise NotACheckpoint(f"{key}: {str(path)!r} is a folder with none of {', '.join(WEIGHT_FILES)}; give the "
                             "checkpoint file in it, or a Hugging Face model folder")
    return _shards(path / name, key) if name.endswith(".index.json") else [path / name]


def _shards(index: Path, key: str) -> list[Path]:
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise NotACheckpoint(f"{key}: {index} is no shard index ({type(e).__name__}: {e}); it needs a "
                             "'weight_map' of parameter names to shard files") from None
    missing = next((s for s in shards if not (index.parent / s).is_file()), None)
    if missing:
        raise FileNotFoundError(f"{key}: {index} names the shard {missing!r}, which is not in {index.parent}; "
                                "download every shard")
    return [index.parent / s for s in shards]


def folder_config(path: str | os.PathLike | None, key: str) -> dict[str, Any]:
    """A Hugging Face model folder's config.json ({} for a file, or a folder without one)."""
    config = Path(path) / "config.json" if path is not None else None
    if config is None or not config.is_file():
        return {}
    try:
        loaded = json.loads(config.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise LayoutError(f"{key}: {config} is not valid JSON ({e}); restore the model folder's config.json") from None
    if not isinstance(loaded, dict):
        raise LayoutError(f"{key}: {config} holds a {type(loaded).__name__}, not a model config; restore it")
    return loaded


def checkpoint_files(path: str | os.PathLike) -> list[str]:
    """What a `file:` entry's extraction reads (a rule's inputs): the weight files and a folder's
    config.json; the path itself when it is no checkpoint (planning names that mistake)."""
    try:
        files = weight_files(path, "file")
    except (OSError, ValueError):
        return [str(path)]
    config = Path(path) / "config.json"
    return [str(f) for f in files] + ([str(config)] if config.is_file() else [])


def sniff(path: Path, name: str) -> str:
    """"safetensors" or "torch" (torch.save's zip archive, or its legacy pickle), from the file's
    first bytes, not its name; NotACheckpoint for anything else. `name` starts the message."""
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= path.stat().st_size - 8:
        return "safetensors"
    if head.startswith((b"PK\x03\x04", b"\x80")):  # a zip's local header; a pickle's PROTO opcode
        return "torch"
    what = "it is empty" if not head else "neither safetensors nor torch.save's"
    raise NotACheckpoint(f"{name} is not a checkpoint ({what}); give a safetensors file or a torch.save'd state dict "
                         "(.pt, .pth, .bin)")


def unwrap(name: str) -> str:
    """A parameter name without DDP's and torch.compile's prefixes."""
    while name.startswith(WRAPPERS):
        name = name.split(".", 1)[1]
    return name


def read_shapes(files: Sequence[Path], key: str) -> dict[str, tuple[int, ...]] | None:
    """Every parameter's shape, by name, without torch; None when only torch can tell (a legacy
    pickle, or one holding objects other than tensors: torch.load(weights_only=True) decides)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        name = f"{key}: checkpoint {path}"
        part = _safetensors_shapes(path, name) if sniff(path, name) == "safetensors" else _torch_shapes(path)
        if part is None:
            return None
        shapes.update(part)
    return shapes


def _safetensors_shapes(path: Path, name: str) -> dict[str, tuple[int, ...]]:
    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = f.read(size)
    try:
        entries = json.loads(header)
        return {unwrap(k): tuple(v["shape"]) for k, v in entries.items() if k != "__metadata__"}
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
        raise NotACheckpoint(f"{name} is not a readable safetensors file (its header is not safetensors' JSON); give "
                             "an intact safetensors file or a torch.save'd state dict") from None


class _Shape(tuple):
    """A tensor in a pickle read for its names: its shape, nothing else."""


class _Opaque(Exception):
    """A pickled object other than a state dict's: left to torch.load(weights_only=True)."""


def _tensor(storage: object, offset: int, size: Sequence[int], *rest: object) -> _Shape:
    return _Shape(size)


class _ShapeUnpickler(pickle.Unpickler):
    # A state dict needs these globals only; any other stops the reading, so nothing else is built or run.
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return lambda data, *rest: data
        if module == "torch" and name.endswith("Storage"):
            return name
        raise _Opaque(f"{module}.{name}")

    def persistent_load(self, pid: object) -> None:  # a tensor's storage: its bytes are not read
        return None


def _torch_shapes(path: Path) -> dict[str, tuple[int, ...]] | None:
    """A torch.save zip archive's names and shapes, at the top or under "state_dict"/"model" as
    load_state_dict finds them; None for a legacy pickle or anything but tensors."""
    try:
        with zipfile.ZipFile(path) as archive:
            pkl = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            if pkl is None:
                return None
            loaded = _ShapeUnpickler(archive.open(pkl)).load()
    except (zipfile.BadZipFile, _Opaque, pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError):
        return None
    if isinstance(loaded, Mapping):
        nested = next((loaded[k] for k in ("state_dict", "model") if isinstance(loaded.get(k), Mapping)), None)
        loaded = loaded if nested is None else nested
    if not isinstance(loaded, Mapping) or not all(isinstance(k, str) and isinstance(v, _Shape)
                                                  for k, v in loaded.items()):
        return None
    return {unwrap(k): tuple(v) for k, v in loaded.items()}


# --- layouts ---------------------------------------------------------------------------------------

def mapping_layout(mapping: object, key: str) -> Layout:
    """A user's `mapping` as a Layout: q, k, v and o (or qkv and o) parameter names with `{layer}`,
    and `conv1d` (default false). `key` (`pretrained.<label>.mapping`) starts each error."""
    if not isinstance(mapping, Mapping):
        raise LayoutError(f"{key}: must map q, k, v and o (or qkv and o) to parameter names with {{layer}}, not a "
                          f"{type(mapping).__name__}")
    conv1d = mapping.get("conv1d", False)
    if not isinstance(conv1d, bool):
        raise LayoutError(f"{key}.conv1d={conv1d!r}: must be true (weights stored (in, out), as GPT-2's Conv1D) or "
                          "false (nn.Linear's (out, in))")
    patterns = {role: p for role, p in mapping.items() if role != "conv1d"}
    unknown = sorted(str(role) for role in patterns if role not in ROLES)
    if unknown:
        raise LayoutError(f"{key}: unknown key(s) {unknown}; its keys are {', '.join(ROLES)} and conv1d")
    if set(patterns) not in ({"q", "k", "v", "o"}, {"qkv", "o"}):
        raise LayoutError(f"{key}: give q, k, v and o, or a fused qkv and o; it has {sorted(patterns)}")
    for role, pattern in patterns.items():
        if not isinstance(pattern, str) or pattern.count("{layer}") != 1:
            raise LayoutError(f"{key}.{role}: {pattern!r} must be a parameter name with {{layer}} once, where the "
                              "layer index goes, e.g. 'model.encoder.layers.{layer}.self_attn.q_proj.weight'")
    return Layout("mapped", patterns, conv1d)


def find_layout(shapes: Shapes, *, mapping: object = None, only: str | None = None,
                key: str | None = None) -> Found:
    """The checkpoint's attention layers: by `mapping` if given, else the one built-in layout
    (LAYOUTS, or only `only`) its names have. LayoutError naming `key`.file (or .mapping) and
    some of the names found when there is none, or more than one."""
    if mapping is not None:
        layout = mapping_layout(mapping, _at(key, "mapping"))
        numbered = _match(layout, shapes, prefixed=False).get("")
        if not numbered:
            raise LayoutError(f"{_at(key, 'mapping')}: {layout.patterns[layout.first]!r} matches none of the "
                              f"checkpoint's {len(shapes)} parameters, e.g. {_some(shapes)}; correct the pattern")
        return _layers(layout, "", numbered, shapes, _at(key, "mapping"))
    candidates = [LAYOUTS[only]] if only else list(LAYOUTS.values())
    hits = [(layout, prefix, numbered) for layout in candidates
            for prefix, numbered in _match(layout, shapes, prefixed=True).items()]
    where = _at(key, "file")
    if not hits:
        raise LayoutError(f"{where}: {_none_found(only, shapes)}")
    if len(hits) > 1:
        seen = ", ".join(f"{layout.name} under {prefix!r}" for layout, prefix, _ in hits)
        raise LayoutError(f"{where}: attention layers of more than one layout or prefix ({seen}); add a `mapping` "
                          "naming the layers to read (docs/pretrained.md)")
    return _layers(*hits[0], shapes, where)


def _at(key: str | None, part: str) -> str:
    return f"{key}.{part}" if key else "checkpoint"


def _none_found(only: str | None, shapes: Shapes) -> str:
    if only == "gpt2":
        return (f"no GPT-2 attention weights found: expected keys like 'h.0.attn.c_attn.weight' (under any prefix, "
                f"e.g. 'transformer.'); its {len(shapes)} parameters include {_some(shapes)}")
    known = "; ".join(f"{layout.name} {layout.patterns[layout.first]!r}" for layout in LAYOUTS.values())
    return (f"no known attention layout ({known}) among its {len(shapes)} parameters, e.g. {_some(shapes)}; add a "
            "`mapping` of the q, k, v, o weights' names with {layer} and, unless config.json gives them, `num_heads` "
            "(docs/pretrained.md)")


def _some(names: Shapes, n: int = 5) -> str:
    """The first `n` attention-like names (any names if none looks like attention), for a message."""
    attention = [name for name in names if any(w in name.lower() for w in _ATTENTION_WORDS)]
    shown = (attention or list(names))[:n]
    return f"{shown}" + (f" (+{len(names) - len(shown)} more)" if len(names) > len(shown) else "")


def _match(layout: Layout, names: Shapes, *, prefixed: bool) -> dict[str, dict[int, str]]:
    """prefix -> {layer index: the index as written} of the names the layout's first role matches."""
    body = re.escape(layout.patterns[layout.first]).replace(re.escape("{layer}"), r"(?P<layer>\d+)")
    rx = re.compile(rf"^(?P<prefix>(?:.+\.)?){body}$" if prefixed else rf"^(?P<prefix>){body}$")
    found: dict[str, dict[int, str]] = {}
    for name in names:
        m = rx.match(name)
        if m:
            found.setdefault(m.group("prefix"), {})[int(m.group("layer"))] = m.group("layer")
    return found


def _layers(layout: Layout, prefix: str, numbered: Mapping[int, str], shapes: Shapes, where: str) -> Found:
    indices = sorted(numbered)
    if indices != list(range(len(indices))):
        raise LayoutError(f"{where}: {layout.name} attention layers {indices} under {prefix!r}; expected 0.."
                          f"{len(indices) - 1} (a layer is missing from the checkpoint)")
    layers = []
    for i in indices:
        names = {role: prefix + p.replace("{layer}", numbered[i]) for role, p in layout.patterns.items()}
        missing = next((n for n in names.values() if n not in shapes), None)
        if missing:
            raise LayoutError(f"{where}: the checkpoint has {names[layout.first]!r} but no {missing!r}")
        layers.append(names)
    return Found(layout, tuple(layers), _width(layout, layers, shapes, where))


def _width(layout: Layout, layers: Sequence[Mapping[str, str]], shapes: Shapes, where: str) -> int:
    """The one width d of every layer: each projection d x d (a fused qkv 3d x d, or d x 3d for Conv1D)."""
    first = tuple(shapes[layers[0]["o"]])
    d = first[0] if len(first) == 2 else 0
    fused = (d, 3 * d) if layout.conv1d else (3 * d, d)
    for i, names in enumerate(layers):
        for role, name in names.items():
            want = fused if role == "qkv" else (d, d)
            if tuple(shapes[name]) != want or not d:
                raise LayoutError(f"{where}: layer {i}'s {name!r} is {tuple(shapes[name])}, not {want}: the "
                                  f"{layout.name} layout reads square self-attention of one width d (from layer 0's "
                                  f"output projection {first}), each of q, k, v, o d x d")
    return d


def head_count(config: Mapping[str, Any], num_heads: int | None, key: str, *, known: int | None = None) -> int:
    """Heads per layer: the entry's `num_heads`, else config.json's (HEAD_KEYS), else `known` (a
    released GPT-2 size). The two given and different, or none at all: LayoutError naming `key`.num_heads."""
    found = {k: config[k] for k in HEAD_KEYS if isinstance(config.get(k), int) and not isinstance(config[k], bool)}
    values = sorted(set(found.values()))
    if num_heads is not None:
        if values and num_heads not in values:
            raise LayoutError(f"{key}.num_heads={num_heads}: the model's config.json says {found}; remove num_heads "
                              "or set it to the mapped layers' count")
        return num_heads
    if len(values) == 1:
        return values[0]
    if values:
        raise LayoutError(f"{key}.num_heads: required: config.json gives several head counts {found}; set the one "
                          "of the layers read")
    if known is not None:
        return known
    hint = f", or set `model` to its timm architecture {config['architecture']!r}" if "architecture" in config else ""
    raise LayoutError(f"{key}.num_heads: required: the checkpoint has no config.json giving its heads "
                      f"({', '.join(HEAD_KEYS)}); set num_heads{hint}")


def check_heads(found: Found, heads: int, key: str | None = None) -> None:
    if found.width % heads:
        where = f"{key}.num_heads: " if key else ""
        raise LayoutError(f"{where}width {found.width} is not divisible by num_heads={heads}; give the checkpoint's "
                          "own head count")
