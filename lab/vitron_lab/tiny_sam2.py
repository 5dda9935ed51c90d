"""Random-weight tiny SAM 2 video models (transformers' Sam2VideoModel) and their processor, for the tiny profile
and as the starting point of the shapes tracker's training; saved with `save_pretrained` so the runtime's
`load_sam2_video` loads them as it loads the published checkpoints."""

from __future__ import annotations

from pathlib import Path

from vitron_ros.core.model.weights import replacing_folder


def tiny_sam2_config(image_size: int = 128):
    """A SAM 2 with the published layout (Hiera + FPN, memory attention and encoder) at ~1.4 M parameters.

    Constraints the code imposes, not choices: the memory encoder's output is 64 wide (memory attention reads a
    fixed 64-channel key) and must be narrower than the FPN width, which object pointers are split to match.
    One mask per prompt: SAM 2 picks among its three candidates by its IoU head, which the video forward gives no
    training signal, so a trained-from-scratch tiny model would pick at random (measured: J stuck at 0.41).
    """
    from transformers import Sam2VideoConfig

    if image_size % 32:
        raise ValueError(f"tiny SAM 2 image size must be a multiple of 32, got {image_size}")
    side = image_size
    grid = side // 16
    hidden = 128
    return Sam2VideoConfig(
        image_size=side,
        vision_config=dict(
            model_type="sam2_vision_model",
            backbone_config=dict(
                model_type="sam2_hiera_det_model",
                image_size=[side, side],
                hidden_size=16,
                num_attention_heads=1,
                blocks_per_stage=[1, 1, 2, 1],
                embed_dim_per_stage=[16, 32, 64, 128],
                num_attention_heads_per_stage=[1, 1, 2, 2],
                window_size_per_stage=[8, 4, 4, 2],
                global_attention_blocks=[3],  # not a stage's first block: those pool queries with the window
                window_positional_embedding_background_size=[2, 2],
            ),
            backbone_channel_list=[128, 64, 32, 16],
            backbone_feature_sizes=[[side // 4] * 2, [side // 8] * 2, [grid, grid]],
            fpn_hidden_size=hidden,
        ),
        prompt_encoder_config=dict(hidden_size=hidden, image_size=side, patch_size=16),
        mask_decoder_config=dict(hidden_size=hidden, mlp_dim=256, num_attention_heads=4, iou_head_hidden_dim=64,
                                 dynamic_multimask_via_stability=False),
        multimask_output_in_sam=False,
        multimask_output_for_tracking=False,
        memory_attention_hidden_size=hidden,
        memory_attention_num_layers=2,
        memory_attention_feed_forward_hidden_size=256,
        memory_attention_rope_feat_sizes=[grid, grid],
        memory_encoder_hidden_size=hidden,
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=hidden,
        memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=256,
    )


def tiny_sam2_processor(image_size: int = 128):
    from transformers import Sam2ImageProcessor, Sam2VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import (
        Sam2VideoVideoProcessor,
    )

    size = {"height": image_size, "width": image_size}
    return Sam2VideoProcessor(
        image_processor=Sam2ImageProcessor(size=size, mask_size={"height": image_size // 4, "width": image_size // 4}),
        video_processor=Sam2VideoVideoProcessor(size=size),
        target_size=image_size,
    )


def share_prompt_positions(model) -> None:
    """Give the prompt encoder the image's random Fourier frame, as SAM 2 has one (`pe_layer`) for both.

    transformers' Sam2VideoModel keeps two buffers, `shared_image_embedding` (the image-wide positional encoding the
    mask decoder attends with) and `prompt_encoder.shared_embedding` (points' and box corners' encoding), and its
    checkpoint converter copies one matrix into both; a model built from a config draws them independently. Then a
    point's encoding matches no image position, and since both are fixed buffers only the decoder's projections could
    learn to map one onto the other: the shapes tracker trained that way moved its mask logits by at most 0.07
    between boxes at opposite corners.
    """
    import torch

    with torch.no_grad():
        model.prompt_encoder.shared_embedding.positional_embedding.copy_(
            model.shared_image_embedding.positional_embedding)


def build_tiny_sam2(folder: Path, image_size: int = 128, seed: int = 0, progress=print) -> None:
    """Write a random-weight tiny SAM 2 video model and its processor to `folder` (atomically)."""
    import torch
    from transformers import Sam2VideoModel

    folder = Path(folder)
    progress(f"building tiny SAM 2 (random weights) -> {folder}")
    torch.manual_seed(seed)
    model = Sam2VideoModel(tiny_sam2_config(image_size))
    share_prompt_positions(model)
    with replacing_folder(folder) as staging:
        model.save_pretrained(staging)
        tiny_sam2_processor(image_size).save_pretrained(staging)
