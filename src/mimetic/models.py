"""Named ViT configurations, built with timm's VisionTransformer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from timm.models.vision_transformer import VisionTransformer

# Architecture only; the data decides channels and classes. Widths follow ViT-Tiny/Small.
MODELS: dict[str, dict] = {
    # 8x8 scikit-learn digits: 16 tokens of width 96, 3 heads of 32 (the ViT-Tiny ratio d/H = 3).
    "vit_digits": dict(img_size=8, patch_size=2, embed_dim=96, depth=4, num_heads=3, mlp_ratio=2.0),
    "vit_tiny_patch2_32": dict(img_size=32, patch_size=2, embed_dim=192, depth=12, num_heads=3),
    "vit_tiny_patch4_32": dict(img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3),
    "vit_tiny_patch4_64": dict(img_size=64, patch_size=4, embed_dim=192, depth=12, num_heads=3),
    "vit_tiny_patch16_224": dict(img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=3),
    "vit_small_patch16_224": dict(img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6),
}
POOLS = ("avg", "token")
POS_EMBEDS = ("learned", "sincos")


def create_model(name: str, *, num_classes: int, in_chans: int = 3, pool: str = "avg",
                 pos_embed: str = "learned", drop_path: float = 0.0) -> VisionTransformer:
    """A ViT from MODELS with the model's own (timm) initialization.

    pool: "avg" = no class token, global average pooling; "token" = class token.
    pos_embed: "learned", or "sincos" = fixed 2-D sin-cos embeddings (not trained).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; choose one of {POOLS}")
    if pos_embed not in POS_EMBEDS:
        raise ValueError(f"unknown pos_embed {pos_embed!r}; choose one of {POS_EMBEDS}")
    # timm on first use: a config check (mimetic.checks) needs MODELS, not timm's import time
    from timm.layers import build_sincos2d_pos_embed
    from timm.models.vision_transformer import VisionTransformer

    cfg = MODELS[name]
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
