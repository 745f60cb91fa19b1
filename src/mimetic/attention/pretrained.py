"""Attention weights of pretrained models: timm models by name (from the hub or a local file),
GPT-2 sizes, and local checkpoints of other layouts (BERT, or any with a `mapping`).

timm models go through timm, so a hub name with a tag (`vit_tiny_patch16_224.augreg_in21k_ft_in1k`)
and a local checkpoint (safetensors or a PyTorch state dict) load the same way, through the
model's own checkpoint filter. Every other checkpoint is read straight from its file, or a Hugging
Face model folder's (config.json and its weights): the four projections are all the analysis
needs, so `transformers` is not required. Its layout, heads, widths and depth come from its
parameter names, shapes and config.json (`mimetic.attention._layouts`, which planning runs without
torch), never from a model's name. A local file is read here, not by timm's loader: by its first
bytes, a PyTorch one with weights_only=True, so a planted pickle is refused whatever timm's version.

GPT-2's attention is a fused Conv1D `c_attn` whose weight is (d, 3d) and computes
y = x @ W + b: it is already in the x @ W convention of `mimetic.attention.weights`, so W_q, W_k,
W_v are its column blocks [:, :d], [:, d:2d], [:, 2d:] with no transpose (the opposite of
nn.Linear's weight = W^T, which BERT's query/key/value/output.dense and a timm qkv store). Heads
split the columns of each block, h*k .. (h+1)*k, in every layout.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mimetic import io
from mimetic.attention._layouts import (Found, LayoutError, NotACheckpoint, check_heads, checkpoint_files, find_layout,
                                        folder_config, head_count, read_shapes, sniff, unwrap, weight_files)

if TYPE_CHECKING:  # torch on first use: the workflow's config check reads the checkpoints' headers
    from torch import Tensor, nn

    from mimetic.attention.weights import AttentionWeights

__all__ = ["GPT2_HEADS", "GPT2_REPO", "LayoutError", "NotACheckpoint", "Pretrained", "PretrainedUnavailable",
           "check_entry", "checkpoint_files", "gpt2_weights", "hub_cache", "is_gpt2", "layout_weights",
           "load_pretrained", "load_state_dict", "load_timm", "pretrained_weights"]

# Heads of the released GPT-2 sizes on the hub (a local GPT-2 checkpoint's config.json, or `num_heads`, wins).
GPT2_HEADS = {"gpt2": 12, "gpt2-medium": 16, "gpt2-large": 20, "gpt2-xl": 25}
GPT2_REPO = "openai-community/{model}"  # where the Hugging Face hub keeps the released sizes


class PretrainedUnavailable(RuntimeError):
    """The weights are neither reachable on the hub nor in the cache, and no local file was given."""


@dataclass(frozen=True)
class Pretrained:
    """A pretrained model's attention, layer by layer, and the layout it was read in (timm, GPT-2, BERT, mapped)."""

    weights: list[AttentionWeights]
    layout: str


def is_gpt2(model: str) -> bool:
    """Whether `model` names a GPT-2-layout checkpoint (gpt2, gpt2-medium, ...) rather than a timm model."""
    return model in GPT2_HEADS


def hub_cache() -> str:
    """The folder the Hugging Face hub client caches downloads in (HF_HUB_CACHE / HF_HOME aware)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _unavailable(model: str, config_key: str, cause: BaseException) -> PretrainedUnavailable:
    reason = next(iter(str(cause).splitlines()), "")  # the hub client's first line says enough
    return PretrainedUnavailable(
        f"cannot load the pretrained weights of {model!r}: the hub is unreachable and they are not in the "
        f"cache {hub_cache()} ({type(cause).__name__}: {reason}). "
        f"Either download them there on a machine with internet access (e.g. run this once online), or "
        f"set the config key `{config_key}` to a local checkpoint (safetensors or a PyTorch state dict)."
    )


def _torch_load(path: Path, name: str) -> object:
    import torch

    try:
        # weights_only explicitly: timm 1.0.9-1.0.25 unpickled anything, so a planted file ran code. An
        # open file, not its name: recent torch reads a name ending in .safetensors as safetensors.
        with path.open("rb") as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = io.refused_global(e)
        what = f"the pickled object {refused}" if refused else "pickled Python objects"
        raise NotACheckpoint(f"{name} is refused: it holds {what}, which could run code when loaded; give a "
                             "safetensors file or a torch.save of tensors only") from None
    except (RuntimeError, EOFError) as e:  # a zip archive torch cannot read, a truncated pickle
        raise NotACheckpoint(f"{name} is not a readable PyTorch checkpoint ({_first_line(e)}); give a safetensors "
                             "file or a torch.save'd state dict") from None


def _first_line(e: BaseException) -> str:
    """The first sentence of an error's text: torch appends paragraphs of advice."""
    line = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
    return line.split(". ")[0]


def _state(loaded: object, name: str) -> dict[str, Tensor]:
    """The flat state dict in a loaded checkpoint: at the top, or under "state_dict" or "model" as
    training scripts save it, with DDP's and torch.compile's prefixes stripped."""
    import torch

    if isinstance(loaded, Mapping):
        nested = next((loaded[k] for k in ("state_dict", "model") if isinstance(loaded.get(k), Mapping)), None)
        loaded = loaded if nested is None else nested
    if not isinstance(loaded, Mapping):
        raise NotACheckpoint(f"{name} holds a {type(loaded).__name__}, not a state dict; give a mapping of parameter "
                             "names to tensors (at the top, or under 'state_dict' or 'model')")
    bad = next((k for k, v in loaded.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        what = (f"its entry {bad!r} is a {type(loaded[bad]).__name__}, not a tensor" if isinstance(bad, str) else
                f"its key {bad!r} is a {type(bad).__name__}, not a parameter name")
        raise NotACheckpoint(f"{name} is no state dict: {what}; give a mapping of parameter names to tensors")
    return {unwrap(key): tensor for key, tensor in loaded.items()}


def load_state_dict(path: str | os.PathLike, config_key: str | None = None) -> dict[str, Tensor]:
    """A checkpoint file as a flat state dict: safetensors, or a torch.save'd state dict (also one
    nested under "state_dict" or "model", as training scripts save them), read without running
    code whatever timm's version. NotACheckpoint (its message names `config_key` and the file) for
    a file that is none of these or holds pickled objects."""
    path = Path(path)
    name = f"{config_key}: checkpoint {path}" if config_key else f"checkpoint {path}"
    if sniff(path, name) == "torch":
        return _state(_torch_load(path, name), name)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return _state(load_file(str(path), device="cpu"), name)
    except SafetensorError as e:  # a header that is not safetensors' JSON, a truncated file
        raise NotACheckpoint(f"{name} is not a readable safetensors file ({e}); give an intact safetensors file "
                             "or a torch.save'd state dict") from None


def _load_all(files: Sequence[Path], config_key: str) -> dict[str, Tensor]:
    """The state dict of one checkpoint file, or of every shard of a model folder."""
    state: dict[str, Tensor] = {}
    for path in files:
        state.update(load_state_dict(path, config_key))
    return state


def load_timm(model: str, file: str | os.PathLike | None = None, *,
              config_key: str = "pretrained.<label>.file") -> nn.Module:
    """The timm model `model` (architecture name, optionally with a pretrained tag) with its
    pretrained weights: from `file` (a checkpoint, or a model folder holding one) if given, else
    from the hub (or its cache).

    Raises PretrainedUnavailable naming the model, the cache and `config_key` when the hub
    cannot be reached and the weights are not cached.
    """
    import timm

    if not timm.is_model(model):
        raise ValueError(f"{model!r} is not a timm model name; see timm.list_models() (tags like "
                         "'.augreg_in21k_ft_in1k' are allowed), or use 'gpt2' for GPT-2")
    if file is not None:
        state = _load_all(weight_files(file, config_key), config_key)
        # A fine-tuned checkpoint may have any number of classes: build the model with the
        # file's, so timm loads strictly (a mismatched attention key still fails loudly).
        classifier = f"{timm.models.get_pretrained_cfg(model).classifier}.weight"
        head = state.get(classifier)
        num_classes = head.shape[0] if head is not None and head.dim() == 2 else 0
        # The overlay makes timm treat the file as the pretrained source, so the model's own
        # checkpoint filter (key renames, position-embedding resize) applies to it as to hub weights.
        overlay = dict(state_dict=state, num_classes=num_classes)
        return timm.create_model(model, pretrained=True, num_classes=num_classes,
                                 pretrained_cfg_overlay=overlay).eval()
    try:
        return timm.create_model(model, pretrained=True).eval()
    except OSError as e:  # huggingface_hub's LocalEntryNotFoundError and urllib's URLError are OSErrors
        raise _unavailable(model, config_key, e) from e


def layout_weights(state_dict: Mapping[str, Tensor], found: Found, num_heads: int) -> list[AttentionWeights]:
    """Per layer W_q, W_k, W_v, W_proj (x @ W convention) of the layers `found` names in `state_dict`."""
    from mimetic.attention.weights import AttentionWeights

    d = found.width

    def as_w(t: Tensor) -> Tensor:  # nn.Linear stores W^T (out, in); Conv1D stores W (in, out) itself
        return t if found.layout.conv1d else t.T

    out = []
    for names in found.layers:
        if found.layout.fused:
            qkv = as_w(state_dict[names["qkv"]])  # (d, 3d): columns [q | k | v]
            q, k, v = qkv[:, :d], qkv[:, d:2 * d], qkv[:, 2 * d:]
        else:
            q, k, v = (as_w(state_dict[names[role]]) for role in ("q", "k", "v"))
        out.append(AttentionWeights(q=q, k=k, v=v, proj=as_w(state_dict[names["o"]]), num_heads=num_heads))
    return out


def _shapes(state_dict: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in state_dict.items()}


def gpt2_weights(state_dict: Mapping[str, Tensor], num_heads: int) -> list[AttentionWeights]:
    """Per layer W_q, W_k, W_v, W_proj (x @ W convention) of a GPT-2-layout state dict, with or
    without a prefix (`transformer.` of GPT2LMHeadModel)."""
    found = find_layout(_shapes(state_dict), only="gpt2")
    check_heads(found, num_heads)
    return layout_weights(state_dict, found, num_heads)


def _gpt2_hub_file(model: str, config_key: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(GPT2_REPO.format(model=model), "model.safetensors"))
    except OSError as e:  # LocalEntryNotFoundError when offline and not cached
        raise _unavailable(model, config_key, e) from e


def _is_timm(model: str | None) -> bool:
    return model is not None and not is_gpt2(model)


def _check_keys(key: str, model: str | None, file: object, num_heads: int | None, mapping: object) -> None:
    """The keys of one entry that go together: `model` or `file`; `num_heads` and `mapping` where they apply."""
    if model is None and file is None:
        raise ValueError(f"{key}: give `model` (a timm name or GPT-2 size, from the hub) or `file` (a local "
                         "checkpoint or Hugging Face model folder)")
    if num_heads is not None and num_heads < 1:
        raise ValueError(f"{key}.num_heads={num_heads}: must be >= 1")
    if _is_timm(model) and num_heads is not None:
        raise ValueError(f"{key}.num_heads: only GPT-2 sizes and checkpoints without `model` take it; timm models "
                         f"({model!r}) know their own heads")
    if model is not None and mapping is not None:
        raise ValueError(f"{key}.mapping: only for a `file` without `model`; {model!r} has a layout of its own: "
                         "remove one of them")


def _attention(shapes: Mapping[str, Sequence[int]], config: Mapping[str, Any], model: str | None,
               num_heads: int | None, mapping: object, key: str) -> tuple[Found, int]:
    """The checkpoint's attention layers and heads per layer; LayoutError naming the key to set."""
    found = find_layout(shapes, mapping=mapping, only="gpt2" if model else None, key=key)
    heads = head_count(config, num_heads, key, known=GPT2_HEADS.get(model or ""))
    check_heads(found, heads, key)
    return found, heads


def check_entry(label: str, model: str | None, file: str | os.PathLike | None, num_heads: int | None = None,
                mapping: object = None) -> None:
    """Planning's check of one `pretrained:` entry, without torch: the keys it combines and, for a
    checkpoint read outside timm, its layout, heads and widths from the file's header (one that
    only torch can read, a legacy pickle, is checked when extracted). Errors name the entry's key."""
    key = f"pretrained.{label}"
    _check_keys(key, model, file, num_heads, mapping)
    if file is None:
        return
    files = weight_files(file, f"{key}.file")
    if _is_timm(model):
        return  # timm's checkpoint filter renames keys: the model's loader judges the file
    shapes = read_shapes(files, f"{key}.file")
    if shapes is not None:
        _attention(shapes, folder_config(file, f"{key}.file"), model, num_heads, mapping, key)


def load_pretrained(model: str | None, file: str | os.PathLike | None = None, num_heads: int | None = None,
                    label: str = "<label>", mapping: object = None) -> Pretrained:
    """Per layer attention weights of a pretrained model: a timm name or gpt2[-size] from the hub or
    `file`, or (`model` None) the checkpoint `file` of any layout, detected or given by `mapping`.
    `label` is the model's key in the config's `pretrained` section: errors name
    `pretrained.<label>.file`, `.num_heads` and `.mapping`."""
    from mimetic.attention.weights import attention_layers

    key = f"pretrained.{label}"
    _check_keys(key, model, file, num_heads, mapping)
    if _is_timm(model):
        return Pretrained([layer.read() for layer in attention_layers(_timm_from(model, file, key))], "timm")
    file_key = f"{key}.file"
    files = weight_files(file, file_key) if file is not None else [_gpt2_hub_file(model, file_key)]
    state = _load_all(files, file_key)
    found, heads = _attention(_shapes(state), folder_config(file, file_key), model, num_heads, mapping, key)
    return Pretrained(layout_weights(state, found, heads), found.layout.name)


def pretrained_weights(model: str | None, file: str | os.PathLike | None = None, num_heads: int | None = None,
                       label: str = "<label>", mapping: object = None) -> list[AttentionWeights]:
    """load_pretrained's weights."""
    return load_pretrained(model, file, num_heads, label, mapping).weights


def _timm_from(model: str, file: str | os.PathLike | None, key: str) -> nn.Module:
    """load_timm, with a file of another architecture said in one line (timm lists every key)."""
    file_key = f"{key}.file"
    if file is None:
        return load_timm(model, config_key=file_key)
    try:
        return load_timm(model, file, config_key=file_key)
    except RuntimeError as e:  # load_state_dict's list of missing, unexpected and mismatched keys
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        first = next((line for line in lines if "mismatch" in line or "key" in line), _first_line(e))
        first = first if len(first) <= 300 else first[:300] + "..."  # a list of every missing key
        raise ValueError(f"{file_key}: checkpoint {file} does not fit {model!r} ({first}); set {key}.model to the "
                         "checkpoint's timm architecture, or leave `model` out to read it by layout") from None
