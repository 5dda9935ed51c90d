"""Build SAM with segment-anything's own classes and load official checkpoints safely.

vit_h / vit_l / vit_b come from segment-anything's registry unchanged, so the official `sam_vit_*.pth` state
dicts load key for key. "tiny" is the same `Sam` class with small sizes, for offline tests.
"""

from __future__ import annotations

import os
from functools import partial

from ..config import TinyBuildConfig
from ..errors import CheckpointLoadError
from .weights import load_strict, read_state_dict

OFFICIAL_ARCHS = ("vit_h", "vit_l", "vit_b")
TINY_PROMPT_DIM = 64  # width of the tiny SAM's prompt tokens (the official models use 256)


def build_sam(arch: str, tiny: TinyBuildConfig | None = None):
    """An untrained SAM of the named architecture (random weights)."""
    from segment_anything import sam_model_registry

    if arch in OFFICIAL_ARCHS:
        return sam_model_registry[arch](checkpoint=None)
    if arch == "tiny":
        return _build_tiny_sam(tiny or TinyBuildConfig())
    raise ValueError(f"unknown SAM architecture {arch!r}; expected one of {OFFICIAL_ARCHS + ('tiny',)}")


def _build_tiny_sam(cfg: TinyBuildConfig):
    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    prompt_dim, patch = TINY_PROMPT_DIM, cfg.sam_patch_size
    grid = cfg.sam_image_size // patch
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=cfg.sam_depth,
            embed_dim=cfg.sam_embed_dim,
            img_size=cfg.sam_image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=cfg.sam_heads,
            patch_size=patch,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=[cfg.sam_depth - 1],
            window_size=8,
            out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(cfg.sam_image_size, cfg.sam_image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=256, num_heads=2),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=64,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def load_sam(arch: str, checkpoint: str | os.PathLike, tiny: TinyBuildConfig | None = None, fetch_hint: str = ""):
    """Build `arch` and load its checkpoint strictly (every key must match); returns the model in eval mode."""
    state = read_state_dict(checkpoint, fetch_hint=fetch_hint)
    sam = build_sam(arch, tiny)
    try:
        load_strict(sam, state, str(checkpoint))
    except RuntimeError as exc:  # shape mismatches raise from load_state_dict itself
        if isinstance(exc, CheckpointLoadError):
            raise
        raise CheckpointLoadError(f"checkpoint {checkpoint} does not fit SAM {arch}: {exc}") from None
    return sam.eval()
