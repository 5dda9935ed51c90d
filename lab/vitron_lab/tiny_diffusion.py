"""Random tiny diffusers components, built offline: the inpainting and InstructPix2Pix pipelines of the tiny
profile, with a byte-level BPE tokenizer trained here (no hub) and a random signal projector.

Sizes follow diffusers' own `get_dummy_components()` tests. Saved with `save_pretrained` and loaded back through the
same `from_pretrained` path as a published checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from vitron_ros.core.model.weights import replacing_folder
from vitron_ros.core.specialists.diffusion import PROJECTOR_FILE, build_signal_conditioner, save_signal_conditioner

TINY_TEXT_WIDTH = 32  # CLIP text hidden size = the UNet's cross-attention width
TINY_TOKENS = 32  # tokenizer / text encoder context


def _tokenizer():
    from .tiny import train_tokenizer

    tokenizer = train_tokenizer(400)
    tokenizer.model_max_length = TINY_TOKENS
    return tokenizer


def tiny_pipeline(cls, unet, tokenizer):
    """A Stable Diffusion pipeline of class `cls` around `unet`: random tiny VAE (latents at half the side) and CLIP
    text encoder (made in that order, after the UNet), DDIM, no safety checker."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel

    vae = AutoencoderKL(
        block_out_channels=[16, 32], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_size=TINY_TEXT_WIDTH, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=len(tokenizer), max_position_embeddings=TINY_TOKENS,
    ))
    return cls(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=DDIMScheduler(steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def build_tiny_diffusion(folder: Path, in_channels: int, seed: int, signal_hidden: int | None, progress=print) -> None:
    """A random StableDiffusionInpaintPipeline (in_channels=9) or InstructPix2Pix (8) folder, plus a projector."""
    import torch
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel

    kind = {9: "inpainting", 8: "InstructPix2Pix"}[in_channels]
    progress(f"building tiny {kind} diffusion model (random weights) -> {folder}")
    torch.manual_seed(seed)
    tokenizer = _tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=in_channels, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TINY_TEXT_WIDTH, norm_num_groups=8, attention_head_dim=4,
    )
    cls = StableDiffusionInpaintPipeline if in_channels == 9 else StableDiffusionInstructPix2PixPipeline
    pipe = tiny_pipeline(cls, unet, tokenizer)
    with replacing_folder(folder) as staging:
        pipe.save_pretrained(staging)
        if signal_hidden is not None:
            torch.manual_seed(seed + 1)
            save_signal_conditioner(build_signal_conditioner(signal_hidden, TINY_TEXT_WIDTH), staging / PROJECTOR_FILE)


def build_tiny_diffusion_assets(section, cfg, progress=print) -> None:
    """The folders a tiny profile's editor or generator section names, where missing (shared folders built once);
    `cfg`: the tiny build's sizes (TinyBuildConfig)."""
    seed = cfg.seed + 3
    if not (Path(section.model) / "model_index.json").is_file():
        build_tiny_diffusion(Path(section.model), 9, seed, cfg.text_hidden_size, progress)
    instruct = getattr(section, "instruct_model", None)
    if instruct is not None and not (Path(instruct) / "model_index.json").is_file():
        build_tiny_diffusion(Path(instruct), 8, seed + 2, None, progress)
