"""Attention weights of pretrained models: timm ViTs from the hub or a local file, and GPT-2.

ViTs go through timm, so a hub name with a tag (`vit_tiny_patch16_224.augreg_in21k_ft_in1k`)
and a local checkpoint (safetensors or a PyTorch state dict) load the same way, through the
model's own checkpoint filter. A local file is read here, not by timm's loader: by its first bytes,
a PyTorch one with weights_only=True, so a planted pickle is refused whatever timm's version.
GPT-2 is read straight from its checkpoint file: the four projections are all the analysis needs,
so `transformers` is not required.

GPT-2's attention is a fused Conv1D `c_attn` whose weight is (d, 3d) and computes
y = x @ W + b: it is already in the x @ W convention of `mimetic.attention.weights`, so W_q, W_k,
W_v are its column blocks [:, :d], [:, d:2d], [:, 2d:] with no transpose (the opposite of
nn.Linear's weight = W^T). Heads split the columns of each block, h*k .. (h+1)*k.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mimetic import io

if TYPE_CHECKING:  # torch on first use: the workflow's config check reads the GPT-2 sizes
    from torch import Tensor, nn

    from mimetic.attention.weights import AttentionWeights

# Heads of the released GPT-2 sizes; other GPT-2-layout checkpoints need `num_heads`.
GPT2_HEADS = {"gpt2": 12, "gpt2-medium": 16, "gpt2-large": 20, "gpt2-xl": 25}
GPT2_REPO = "openai-community/{model}"  # where the Hugging Face hub keeps the released sizes
_GPT2_QKV = re.compile(r"^(?:transformer\.)?h\.(\d+)\.attn\.c_attn\.weight$")


_WRAPPERS = ("module.", "_orig_mod.")  # DDP's and torch.compile's key prefixes, in either order (timm strips them)


class PretrainedUnavailable(RuntimeError):
    """The weights are neither reachable on the hub nor in the cache, and no local file was given."""


class NotACheckpoint(ValueError):
    """A local checkpoint file that is refused or holds no state dict; the message names it and what to do."""


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


def _existing(path: str | os.PathLike, config_key: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise NotACheckpoint(f"{config_key}: {str(path)!r} is a folder; give the checkpoint file in it (safetensors "
                             "or a PyTorch state dict)")
    if not path.is_file():
        raise FileNotFoundError(f"{config_key}: checkpoint file {str(path)!r} does not exist; "
                                "give a safetensors or PyTorch state-dict file, or remove the key to use the hub")
    return path


def _kind(path: Path) -> str | None:
    """What the file holds, from its first bytes (not its name): "safetensors" (an 8-byte header
    length, then the header's JSON), "torch" (torch.save's zip archive, or the pickle of its legacy
    format), or None for anything else."""
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= path.stat().st_size - 8:
        return "safetensors"
    if head.startswith((b"PK\x03\x04", b"\x80")):  # a zip's local header; a pickle's PROTO opcode
        return "torch"
    return None


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
    state = {}
    for key, tensor in loaded.items():
        while key.startswith(_WRAPPERS):
            key = key.split(".", 1)[1]
        state[key] = tensor
    return state


def load_state_dict(path: str | os.PathLike, config_key: str | None = None) -> dict[str, Tensor]:
    """A checkpoint file as a flat state dict: safetensors, or a torch.save'd state dict (also one
    nested under "state_dict" or "model", as training scripts save them), read without running
    code whatever timm's version. NotACheckpoint (its message names `config_key` and the file) for
    a file that is none of these or holds pickled objects."""
    path = Path(path)
    name = f"{config_key}: checkpoint {path}" if config_key else f"checkpoint {path}"
    kind = _kind(path)
    if kind is None:
        what = "it is empty" if not path.stat().st_size else "neither safetensors nor torch.save's"
        raise NotACheckpoint(f"{name} is not a checkpoint ({what}); give a safetensors file or a torch.save'd state "
                             "dict (.pt, .pth, .bin)")
    if kind == "torch":
        return _state(_torch_load(path, name), name)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return _state(load_file(str(path), device="cpu"), name)
    except SafetensorError as e:  # a header that is not safetensors' JSON, a truncated file
        raise NotACheckpoint(f"{name} is not a readable safetensors file ({e}); give an intact safetensors file "
                             "or a torch.save'd state dict") from None


def load_timm(model: str, file: str | os.PathLike | None = None, *,
              config_key: str = "pretrained.<label>.file") -> nn.Module:
    """The timm model `model` (architecture name, optionally with a pretrained tag) with its
    pretrained weights: from `file` if given, else from the hub (or its cache).

    Raises PretrainedUnavailable naming the model, the cache and `config_key` when the hub
    cannot be reached and the weights are not cached.
    """
    import timm

    if not timm.is_model(model):
        raise ValueError(f"{model!r} is not a timm model name; see timm.list_models() (tags like "
                         "'.augreg_in21k_ft_in1k' are allowed), or use 'gpt2' for GPT-2")
    if file is not None:
        state = load_state_dict(_existing(file, config_key), config_key)
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


def gpt2_weights(state_dict: Mapping[str, Tensor], num_heads: int) -> list[AttentionWeights]:
    """Per layer W_q, W_k, W_v, W_proj (x @ W convention) of a GPT-2-layout state dict, with or
    without the `transformer.` prefix of GPT2LMHeadModel."""
    from mimetic.attention.weights import AttentionWeights

    layers = {int(m.group(1)): key for key in state_dict if (m := _GPT2_QKV.match(key))}
    if not layers:
        raise ValueError("no GPT-2 attention weights found: expected keys like 'h.0.attn.c_attn.weight' "
                         "(or 'transformer.h.0.attn.c_attn.weight')")
    if sorted(layers) != list(range(len(layers))):
        raise ValueError(f"GPT-2 checkpoint has attention layers {sorted(layers)}; expected 0..{len(layers) - 1}")
    out = []
    for i in range(len(layers)):
        proj_key = layers[i].replace("c_attn", "c_proj")
        if proj_key not in state_dict:
            raise ValueError(f"GPT-2 checkpoint has {layers[i]!r} but no {proj_key!r}")
        qkv, proj = state_dict[layers[i]], state_dict[proj_key]
        d = qkv.shape[0] if qkv.dim() == 2 else 0
        if not d or qkv.shape != (d, 3 * d) or proj.shape != (d, d):
            raise ValueError(f"layer {i}: c_attn {tuple(qkv.shape)}, c_proj {tuple(proj.shape)}; a GPT-2 "
                             "Conv1D layout needs c_attn (d, 3d) and c_proj (d, d)")
        if d % num_heads:
            raise ValueError(f"layer {i}: width {d} is not divisible by num_heads={num_heads}")
        # Conv1D: y = x @ W, so no transpose (unlike nn.Linear).
        out.append(AttentionWeights(q=qkv[:, :d], k=qkv[:, d:2 * d], v=qkv[:, 2 * d:], proj=proj,
                                    num_heads=num_heads))
    return out


def _gpt2_hub_file(model: str, config_key: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(GPT2_REPO.format(model=model), "model.safetensors"))
    except OSError as e:  # LocalEntryNotFoundError when offline and not cached
        raise _unavailable(model, config_key, e) from e


def pretrained_weights(model: str, file: str | os.PathLike | None = None, num_heads: int | None = None,
                       label: str = "<label>") -> list[AttentionWeights]:
    """Per layer attention weights of pretrained `model` (a timm name or gpt2[-size]), from the
    hub or `file`. `label` is the model's key in the config's `pretrained` section: errors name
    `pretrained.<label>.file` and `pretrained.<label>.num_heads`."""
    from mimetic.attention.weights import attention_layers

    file_key = f"pretrained.{label}.file"
    if not is_gpt2(model):
        if num_heads is not None:
            raise ValueError(f"pretrained.{label}.num_heads: only GPT-2 checkpoints take it; timm models "
                             f"({model!r}) know their own heads")
        return [layer.read() for layer in attention_layers(_timm_from(model, file, file_key, label))]
    if num_heads is not None and num_heads < 1:
        raise ValueError(f"pretrained.{label}.num_heads={num_heads}: must be >= 1")
    heads = num_heads or GPT2_HEADS.get(model)
    if heads is None:
        raise ValueError(f"pretrained.{label}.num_heads: required for {model!r}; known sizes are "
                         f"{GPT2_HEADS}")
    if file is None:
        return gpt2_weights(load_state_dict(_gpt2_hub_file(model, file_key)), heads)
    return gpt2_weights(load_state_dict(_existing(file, file_key), file_key), heads)


def _timm_from(model: str, file: str | os.PathLike | None, file_key: str, label: str) -> nn.Module:
    """load_timm, with a file of another architecture said in one line (timm lists every key)."""
    if file is None:
        return load_timm(model, config_key=file_key)
    try:
        return load_timm(model, file, config_key=file_key)
    except RuntimeError as e:  # load_state_dict's list of missing, unexpected and mismatched keys
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        first = next((line for line in lines if "mismatch" in line or "key" in line), _first_line(e))
        first = first if len(first) <= 300 else first[:300] + "..."  # a list of every missing key
        raise ValueError(f"{file_key}: checkpoint {file} does not fit {model!r} ({first}); set "
                         f"pretrained.{label}.model to the checkpoint's timm architecture") from None
