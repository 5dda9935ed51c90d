"""Build SAM with segment-anything's own classes and load official checkpoints safely.

vit_h / vit_l / vit_b come from segment-anything's registry unchanged, so the official `sam_vit_*.pth` state
dicts load key for key. "tiny" is the same `Sam` class with small sizes (the lab builds and trains them); a tiny
checkpoint's sizes are read from its own tensors, so no profile has to repeat them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import partial

from ..errors import CheckpointLoadError
from .weights import load_strict, read_state_dict

OFFICIAL_ARCHS = ("vit_h", "vit_l", "vit_b")
TINY_PROMPT_DIM = 64  # width of the tiny SAM's prompt tokens (the official models use 256)


@dataclass(frozen=True)
class TinySamSize:
    """The sizes a tiny SAM is built with (the rest of the architecture is fixed in `_build_tiny_sam`)."""

    image_size: int = 256  # input side; image_size / patch_size is the embedding grid
    patch_size: int = 16
    embed_dim: int = 64  # image encoder width
    depth: int = 2  # image encoder blocks (the last one attends globally)
    heads: int = 2
    prompt_dim: int = TINY_PROMPT_DIM  # prompt tokens and image embedding width


def tiny_sam_size(state: dict, where: str = "checkpoint") -> TinySamSize:
    """The sizes a tiny SAM state dict was built with, read from its tensors' shapes."""
    try:
        embed, _, patch, _ = state["image_encoder.patch_embed.proj.weight"].shape
        grid = state["image_encoder.pos_embed"].shape[1]
        head_dim = state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
        prompt_dim = state["prompt_encoder.no_mask_embed.weight"].shape[1]
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointLoadError(f"{where} is not a SAM state dict with relative positions: {exc!r}") from None
    depth = len({m.group(1) for key in state if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", key))})
    return TinySamSize(grid * patch, patch, embed, depth, embed // head_dim, prompt_dim)


def build_sam(arch: str, size: TinySamSize | None = None):
    """An untrained SAM of the named architecture (random weights); `size` gives a tiny one's sizes."""
    from segment_anything import sam_model_registry

    if arch in OFFICIAL_ARCHS:
        return sam_model_registry[arch](checkpoint=None)
    if arch == "tiny":
        return _build_tiny_sam(size or TinySamSize())
    raise ValueError(f"unknown SAM architecture {arch!r}; expected one of {OFFICIAL_ARCHS + ('tiny',)}")


def _build_tiny_sam(cfg: TinySamSize):
    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    prompt_dim, patch = cfg.prompt_dim, cfg.patch_size
    grid = cfg.image_size // patch
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=cfg.depth,
            embed_dim=cfg.embed_dim,
            img_size=cfg.image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=cfg.heads,
            patch_size=patch,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=[cfg.depth - 1],
            window_size=8,
            out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(cfg.image_size, cfg.image_size),
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


def load_sam(arch: str, checkpoint: str | os.PathLike, fetch_hint: str = ""):
    """Build `arch` and load its checkpoint strictly (every key must match); returns the model in eval mode."""
    state = read_state_dict(checkpoint, fetch_hint=fetch_hint)
    sam = build_sam(arch, tiny_sam_size(state, str(checkpoint)) if arch == "tiny" else None)
    try:
        load_strict(sam, state, str(checkpoint))
    except RuntimeError as exc:  # shape mismatches raise from load_state_dict itself
        if isinstance(exc, CheckpointLoadError):
            raise
        raise CheckpointLoadError(f"checkpoint {checkpoint} does not fit SAM {arch}: {exc}") from None
    return sam.eval()
