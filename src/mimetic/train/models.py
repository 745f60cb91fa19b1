"""Named ViT configurations (a recipe's `model`) and the model factory of a run.

The names say the architecture (timm's where timm has it: `vit_tiny_patch16_224` is its
ViT-Tiny/16); pooling and position embeddings are recipe keys (`pool`, `pos_embed`), recorded
with every run. Registering a model needs no torch: the workflow's config check reads sizes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mimetic.registry import Registry

if TYPE_CHECKING:
    from timm.models.vision_transformer import VisionTransformer
    from torch import nn

    from mimetic.train.recipe import TrainConfig

# name -> the architecture's timm VisionTransformer arguments; the data decides channels and classes
MODELS: Registry[Callable[[], dict[str, Any]]] = Registry("model")
register_model = MODELS.register
POOLS = ("avg", "token")
POS_EMBEDS = ("learned", "sincos")
STAGES = ("init", "final")


@register_model("vit_digits")
def vit_digits() -> dict[str, Any]:
    """8x8 scikit-learn digits: 16 tokens of width 96, 3 heads of 32 (the ViT-Tiny ratio d/H = 3)."""
    return dict(img_size=8, patch_size=2, embed_dim=96, depth=4, num_heads=3, mlp_ratio=2.0)


@register_model("vit_fashion_patch4_28")
def vit_fashion_patch4_28() -> dict[str, Any]:
    """28x28 grey images (Fashion-MNIST) in 4 px patches: 49 tokens of width 96, 4 layers of 3 heads
    of 32 (vit_digits' width, heads and MLP ratio), 0.3 M weights. Small so that both arms x 3
    seeds train on a 2-core CPU in about an hour (config/fashion.yaml); ViT-Tiny's 12 layers of
    192 would be about 12x the compute per image."""
    return dict(img_size=28, patch_size=4, embed_dim=96, depth=4, num_heads=3, mlp_ratio=2.0)


@register_model("vit_tiny_patch2_32")
def vit_tiny_patch2_32() -> dict[str, Any]:
    """ViT-Tiny on 32 px images in 2 px patches: 256 tokens (CIFAR, SVHN; the structured-init recipe)."""
    return dict(img_size=32, patch_size=2, embed_dim=192, depth=12, num_heads=3)


@register_model("vit_tiny_patch4_32")
def vit_tiny_patch4_32() -> dict[str, Any]:
    """ViT-Tiny on 32 px images in 4 px patches: 64 tokens."""
    return dict(img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3)


@register_model("vit_tiny_patch4_64")
def vit_tiny_patch4_64() -> dict[str, Any]:
    """ViT-Tiny on 64 px images in 4 px patches: 256 tokens (Tiny-ImageNet)."""
    return dict(img_size=64, patch_size=4, embed_dim=192, depth=12, num_heads=3)


@register_model("vit_tiny_patch16_224")
def vit_tiny_patch16_224() -> dict[str, Any]:
    """timm's ViT-Tiny/16 at 224 px: 196 tokens (ImageNet)."""
    return dict(img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=3)


@register_model("vit_small_patch16_224")
def vit_small_patch16_224() -> dict[str, Any]:
    """timm's ViT-Small/16 at 224 px."""
    return dict(img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6)


def geometry(name: str) -> dict[str, Any]:
    """The architecture of model `name`; ValueError naming the models for an unknown one."""
    return MODELS.lookup(name)()


def image_size(name: str) -> int:
    return geometry(name)["img_size"]


def check_image_size(model: str, dataset: str, pixels: int) -> None:
    """ValueError unless `model` takes the dataset's `pixels` x `pixels` images."""
    if image_size(model) != pixels:
        raise ValueError(f"model={model!r} takes {image_size(model)}px images but dataset={dataset!r} has {pixels}px; "
                         "pick a matching model")


def build_vit(name: str, *, num_classes: int, in_chans: int = 3, pool: str = "avg", pos_embed: str = "learned",
              drop_path: float = 0.0) -> VisionTransformer:
    """A ViT of MODELS with the model's own (timm) initialization.

    pool: "avg" = no class token, global average pooling; "token" = class token.
    pos_embed: "learned", or "sincos" = fixed 2-D sin-cos embeddings (not trained).
    """
    cfg = geometry(name)
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; choose one of {POOLS}")
    if pos_embed not in POS_EMBEDS:
        raise ValueError(f"unknown pos_embed {pos_embed!r}; choose one of {POS_EMBEDS}")
    import torch
    from timm.layers import build_sincos2d_pos_embed
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(
        **cfg, num_classes=num_classes, in_chans=in_chans, drop_path_rate=drop_path,
        class_token=pool == "token", global_pool=pool,
        # sin-cos embeddings cover the patches only; a class token gets none.
        no_embed_class=pos_embed == "sincos",
    )
    if pos_embed == "sincos":
        grid = cfg["img_size"] // cfg["patch_size"]
        table = build_sincos2d_pos_embed((grid, grid), dim=cfg["embed_dim"])
        with torch.no_grad():
            model.pos_embed.copy_(table.reshape(1, grid * grid, -1))
        model.pos_embed.requires_grad_(False)
    return model


def build_model(cfg: TrainConfig, *, num_classes: int, in_chans: int) -> nn.Module:
    """The run's model: timm's init seeded by cfg.seed, then its attention init.

    The attention noise has its own generator, so every init leaves the global RNG (and with
    it data order and dropout) in the same state.
    """
    import torch

    from mimetic.attention.init import apply_init

    torch.manual_seed(cfg.seed)
    model = build_vit(cfg.model, num_classes=num_classes, in_chans=in_chans, pool=cfg.pool,
                      pos_embed=cfg.pos_embed, drop_path=cfg.drop_path)
    return apply_init(model, cfg.init, seed=cfg.seed, **cfg.init_params)


def init_record(cfg: TrainConfig, model: nn.Module, *, num_classes: int, in_chans: int) -> dict[str, Any]:
    """What the run's init did (its init.json): per tensor part, whether it differs from the model's
    own initialization for the same seed, and per layer the Q/K (mean over heads) and V/Proj
    diagonal mean and mean |off-diagonal| at initialization. `model`: the run's model as built."""
    import dataclasses

    import torch

    from mimetic.attention import INITS, changed_parts, layer_statistics

    with torch.random.fork_rng(devices=[]):  # the twin must not move the run's RNG
        own = build_model(dataclasses.replace(cfg, init="default", init_params={}), num_classes=num_classes,
                          in_chans=in_chans)
    return {"init": cfg.init, "init_params": cfg.init_params, "touches": list(INITS[cfg.init].touches),
            "changed": changed_parts(model, own), "layers": layer_statistics(model)}


def run_model(summary: dict[str, Any], weights: str | os.PathLike, stage: str) -> nn.Module:
    """A finished run's model: stage "init" rebuilds the exact model it started from (same
    seed, same init), "final" loads the weights it ended with."""
    if stage not in STAGES:
        raise ValueError(f"stage={stage!r}: choose one of {STAGES}")
    from safetensors.torch import load_file

    from mimetic.train.recipe import LMConfig, TrainConfig

    state = load_file(str(weights))
    if summary.get("kind") == "lm":
        from mimetic.train.gpt import build_run_gpt, load_run_gpt

        lm = LMConfig(**summary["config"]).validate()
        model = build_run_gpt(lm.model, summary["vocab_size"], lm.seed, lm.init, lm.init_params)
        return (load_run_gpt(model, state) if stage == "final" else model).eval()
    cfg = TrainConfig(**summary["config"]).validate()
    model = build_model(cfg, num_classes=state["head.weight"].shape[0],
                        in_chans=state["patch_embed.proj.weight"].shape[1])
    if stage == "final":
        model.load_state_dict(state)
    return model.eval()
