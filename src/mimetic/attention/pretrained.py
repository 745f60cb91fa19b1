"""Attention weights of pretrained models: timm ViTs from the hub or a local file, and GPT-2.

ViTs go through timm, so a hub name with a tag (`vit_tiny_patch16_224.augreg_in21k_ft_in1k`)
and a local checkpoint (safetensors or a PyTorch state dict) load the same way, through the
model's own checkpoint filter. GPT-2 is read straight from its checkpoint file: the four
projections are all the analysis needs, so `transformers` is not required.

GPT-2's attention is a fused Conv1D `c_attn` whose weight is (d, 3d) and computes
y = x @ W + b: it is already in the x @ W convention of `mimetic.attention.weights`, so W_q, W_k,
W_v are its column blocks [:, :d], [:, d:2d], [:, 2d:] with no transpose (the opposite of
nn.Linear's weight = W^T). Heads split the columns of each block, h*k .. (h+1)*k.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch on first use: the workflow's config check reads the GPT-2 sizes
    from torch import Tensor, nn

    from mimetic.attention.weights import AttentionWeights

# Heads of the released GPT-2 sizes; other GPT-2-layout checkpoints need `num_heads`.
GPT2_HEADS = {"gpt2": 12, "gpt2-medium": 16, "gpt2-large": 20, "gpt2-xl": 25}
GPT2_REPO = "openai-community/{model}"  # where the Hugging Face hub keeps the released sizes
_GPT2_QKV = re.compile(r"^(?:transformer\.)?h\.(\d+)\.attn\.c_attn\.weight$")


class PretrainedUnavailable(RuntimeError):
    """The weights are neither reachable on the hub nor in the cache, and no local file was given."""


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
    if not path.is_file():
        raise FileNotFoundError(f"{config_key}: checkpoint file {str(path)!r} does not exist; "
                                "give a safetensors or PyTorch state-dict file, or remove the key to use the hub")
    return path


def load_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """A checkpoint file as a flat state dict: safetensors, or a torch.save'd state dict (also one
    nested under "state_dict" or "model", as training scripts save them)."""
    from timm.models import load_state_dict as timm_load

    return timm_load(str(path), use_ema=False)


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
        state = load_state_dict(_existing(file, config_key))
        # A fine-tuned checkpoint may have any number of classes: build the model with the
        # file's, so timm loads strictly (a mismatched attention key still fails loudly).
        classifier = f"{timm.models.get_pretrained_cfg(model).classifier}.weight"
        num_classes = state[classifier].shape[0] if classifier in state else 0
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
        d = qkv.shape[0]
        if qkv.shape != (d, 3 * d) or proj.shape != (d, d):
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
        return [layer.read() for layer in attention_layers(load_timm(model, file, config_key=file_key))]
    heads = num_heads or GPT2_HEADS.get(model)
    if heads is None:
        raise ValueError(f"pretrained.{label}.num_heads: required for {model!r}; known sizes are "
                         f"{GPT2_HEADS}")
    path = _existing(file, file_key) if file is not None else _gpt2_hub_file(model, file_key)
    return gpt2_weights(load_state_dict(path), heads)
