"""Random tiny AnimateDiff components, built offline: a Stable Diffusion text-to-image pipeline (4-channel UNet), a
MotionAdapter that fits it and a SparseCtrl RGB control net, sized like diffusers' own AnimateDiff tests.

Saved with `save_pretrained` into three folders, as the published checkpoints are laid out, and loaded back through
the same `from_pretrained` calls (`specialists.video_generator`)."""

from __future__ import annotations

from pathlib import Path

from vitron_ros.core.model.weights import replacing_folder

from .tiny_diffusion import TINY_TEXT_WIDTH, _tokenizer, tiny_pipeline

BLOCKS = (32, 64)


def build_tiny_video(base: Path, adapter: Path, controlnet: Path | None, seed: int, progress=print) -> None:
    import torch
    from diffusers import MotionAdapter, SparseControlNetModel, StableDiffusionPipeline, UNet2DConditionModel

    progress(f"building tiny AnimateDiff (random weights) -> {base}, {adapter}" + (f", {controlnet}" if controlnet else ""))
    torch.manual_seed(seed)
    tokenizer = _tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=BLOCKS, layers_per_block=2, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TINY_TEXT_WIDTH, norm_num_groups=2,
    )
    pipe = tiny_pipeline(StableDiffusionPipeline, unet, tokenizer)
    motion = MotionAdapter(block_out_channels=BLOCKS, motion_layers_per_block=2, motion_norm_num_groups=2,
                           motion_num_attention_heads=4)
    with replacing_folder(base) as staging:
        pipe.save_pretrained(staging)
    with replacing_folder(adapter) as staging:
        motion.save_pretrained(staging)
    if controlnet is not None:
        # the RGB variant: conditioned on the VAE's latents of the given frames (use_simplified_condition_embedding)
        net = SparseControlNetModel(
            block_out_channels=BLOCKS, layers_per_block=2, in_channels=4, conditioning_channels=4,
            down_block_types=("CrossAttnDownBlockMotion", "DownBlockMotion"), cross_attention_dim=TINY_TEXT_WIDTH,
            conditioning_embedding_out_channels=(8, 8), norm_num_groups=2, attention_head_dim=4,
            motion_num_attention_heads=4, use_simplified_condition_embedding=True,
        )
        with torch.no_grad():  # a new control net's output layers start at zero; random ones let the image through
            for parameter in net.parameters():
                if not parameter.any():
                    parameter.normal_(0.0, 0.05)
        with replacing_folder(controlnet) as staging:
            net.save_pretrained(staging)


def build_tiny_video_assets(section, cfg, progress=print) -> None:
    """The folders a tiny profile's video_generator section names, where missing."""
    controlnet = Path(section.image_controlnet) if section.image_controlnet else None
    missing = [not (Path(section.model) / "model_index.json").is_file(),
               not (Path(section.motion_adapter) / "config.json").is_file(),
               controlnet is not None and not (controlnet / "config.json").is_file()]
    if any(missing):
        build_tiny_video(Path(section.model), Path(section.motion_adapter), controlnet, cfg.seed + 7, progress)
