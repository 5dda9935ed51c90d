"""Trace-friendly wrappers of the heavy networks, as backends take them, and the adapters that put a backend's
encoder back where the library calls it.

As segment-anything's `SamOnnxModel`, each wrapper fixes what tracing cannot follow (keyword arguments, output
objects, Python branches) and takes plain tensors. VITRON's [SEG] path needs the sparse prompt tokens as an input
of the mask decoder (the projected [SEG] state is one of them), so the decoder export takes them instead of points.
Each export is checked by running the exported file against PyTorch (tests/test_backends.py, bench_backends.py).
"""

from __future__ import annotations

from ..backends import Encoder, Exportable


def _nn():
    import torch

    return torch, torch.nn


# -- SAM ---------------------------------------------------------------------------------------------------------
def sam_image_encoder_export(sam) -> Exportable:
    """SAM's ViT: (1, 3, S, S) preprocessed (normalised, padded) image -> (1, C, S/16, S/16) embedding."""
    torch, _ = _nn()
    side = sam.image_encoder.img_size
    return Exportable("sam_image_encoder", sam.image_encoder.eval(), (torch.randn(1, 3, side, side),),
                      ("image",), ("embedding",))


def sam_mask_decoder_export(sam) -> Exportable:
    """SAM's mask decoder on sparse prompt tokens (points, box corners and the projected [SEG] state, as the prompt
    encoder and the signal projector give them) and the dense prompt -> every mask token's low-res mask and IoU.

    Single-mask output is token 0, multimask tokens 1.. (segment-anything's MaskDecoder slices the same way)."""
    torch, nn = _nn()

    class SamMaskDecoderExport(nn.Module):
        def __init__(self, sam):
            super().__init__()
            self.mask_decoder = sam.mask_decoder
            self.register_buffer("image_pe", sam.prompt_encoder.get_dense_pe().detach().clone())

        def forward(self, image_embeddings, sparse_prompt_embeddings, dense_prompt_embeddings):
            return self.mask_decoder.predict_masks(
                image_embeddings=image_embeddings,
                image_pe=self.image_pe,
                sparse_prompt_embeddings=sparse_prompt_embeddings,
                dense_prompt_embeddings=dense_prompt_embeddings,
            )

    dim = sam.prompt_encoder.embed_dim
    h, w = sam.prompt_encoder.image_embedding_size
    example = (torch.randn(1, dim, h, w), torch.randn(1, 3, dim), torch.randn(1, dim, h, w))
    return Exportable("sam_mask_decoder", SamMaskDecoderExport(sam).eval(), example,
                      ("image_embeddings", "sparse_prompt_embeddings", "dense_prompt_embeddings"),
                      ("low_res_masks", "iou_predictions"),
                      dynamic={"sparse_prompt_embeddings": {1: "prompt_tokens"}},
                      shape_range={"prompt_tokens": (1, 3, 8)})


def install_sam_image_encoder(sam, encoder: Encoder) -> None:
    """Put a non-torch (or compiled) encoder where SamPredictor and the automatic mask generator call it."""
    torch, nn = _nn()

    class BackendImageEncoder(nn.Module):
        def __init__(self, encoder: Encoder, img_size: int):
            super().__init__()
            self.encoder, self.img_size = encoder, img_size

        def forward(self, x):
            return self.encoder(x)[0].to(x.dtype)

    sam.image_encoder = BackendImageEncoder(encoder, sam.image_encoder.img_size)


# -- CLIP vision tower + LLaVA projector ---------------------------------------------------------------------------
def clip_vision_export(llava, frames: int = 2, max_frames: int = 16) -> Exportable:
    """LLaVA's image features: (T, 3, S, S) pixel values -> (T, N, D) projected patch features in LLM width.

    The example holds two frames: an exporter specialises an axis it sees at size 1."""
    torch, nn = _nn()
    cfg = llava.config
    layers = cfg.vision_feature_layer if isinstance(cfg.vision_feature_layer, (list, tuple)) else [cfg.vision_feature_layer]

    class ClipVisionExport(nn.Module):
        def __init__(self, vision_tower, projector):
            super().__init__()  # the two parts only: the language model is no part of this export
            self.vision_tower, self.projector = vision_tower, projector

        def forward(self, pixel_values):
            # LlavaModel.get_image_features without its split into a per-image list (which would fix the frame
            # count in the export)
            hidden = self.vision_tower(pixel_values, output_hidden_states=True, return_dict=True)
            selected = [hidden.hidden_states[layer] for layer in layers]
            if cfg.vision_feature_select_strategy == "default":
                selected = [states[:, 1:] for states in selected]  # drop CLS
            return self.projector(torch.cat(selected, dim=-1) if len(selected) > 1 else selected[0])

    side = cfg.vision_config.image_size
    return Exportable("clip_vision", ClipVisionExport(llava.model.vision_tower, llava.model.multi_modal_projector).eval(), (torch.randn(frames, 3, side, side),),
                      ("pixel_values",), ("image_features",), dynamic={"pixel_values": {0: "frames"}},
                      shape_range={"frames": (1, 8, max_frames)})


# -- SAM 2 ---------------------------------------------------------------------------------------------------------
def sam2_vision_export(model) -> Exportable:
    """SAM 2's Hiera + FPN: (1, 3, S, S) -> the FPN levels, then their position encodings (high to low resolution)."""
    torch, nn = _nn()

    class Sam2VisionExport(nn.Module):
        def __init__(self, vision_encoder):
            super().__init__()
            self.vision_encoder = vision_encoder

        def forward(self, pixel_values):
            out = self.vision_encoder(pixel_values, return_dict=True)
            return (*out.fpn_hidden_states, *out.fpn_position_encoding)

    side = model.config.image_size
    wrapper = Sam2VisionExport(model.vision_encoder).eval()
    example = torch.randn(1, 3, side, side)
    levels = model.config.vision_config.num_feature_levels
    names = tuple(f"fpn_{i}" for i in range(levels)) + tuple(f"fpn_position_{i}" for i in range(levels))
    return Exportable("sam2_vision", wrapper, (example,), ("pixel_values",), names)


def install_sam2_vision(model, encoder: Encoder) -> None:
    torch, nn = _nn()
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoVisionEncoderOutput

    class BackendVisionEncoder(nn.Module):
        def __init__(self, encoder: Encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, pixel_values, return_dict=True, **kwargs):
            outputs = [t.to(pixel_values.dtype) for t in self.encoder(pixel_values)]
            levels = len(outputs) // 2
            return Sam2VideoVisionEncoderOutput(fpn_hidden_states=tuple(outputs[:levels]),
                                                fpn_position_encoding=tuple(outputs[levels:]))

    model.vision_encoder = BackendVisionEncoder(encoder)


# -- diffusion UNet --------------------------------------------------------------------------------------------------
def unet_export(unet, resolution: int, latent_scale: int, text_tokens: int = 77, signal_tokens: int = 8) -> Exportable:
    """The denoiser: (B, C, h, w) latents, (1,) timestep, (B, T, D) conditioning tokens -> (B, C_out, h, w).

    B is 2 under classifier-free guidance; T is the text's tokens plus any [SEG] conditioning tokens."""
    torch, nn = _nn()

    class UNetExport(nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states):
            # the class's forward, not the instance's: install_unet replaces the latter with a call into this
            forward = type(self.unet).forward
            return forward(self.unet, sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]

    side = resolution // latent_scale
    cfg = unet.config
    example = (torch.randn(2, cfg.in_channels, side, side), torch.tensor([500.0]),
               torch.randn(2, text_tokens, cfg.cross_attention_dim))
    return Exportable("unet", UNetExport(unet).eval(), example, ("sample", "timestep", "encoder_hidden_states"),
                      ("noise_pred",),
                      dynamic={"sample": {0: "batch"}, "encoder_hidden_states": {0: "batch", 1: "tokens"}},
                      shape_range={"batch": (1, 2, 2), "tokens": (text_tokens, text_tokens, text_tokens + signal_tokens)})


def install_unet(unet, encoder: Encoder) -> None:
    """Run `unet`'s forward on the encoder; the module stays (diffusers reads its config, dtype and device)."""
    torch, _ = _nn()

    def forward(sample, timestep, encoder_hidden_states=None, timestep_cond=None, cross_attention_kwargs=None,
                added_cond_kwargs=None, return_dict=True, **kwargs):
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        t = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1)[:1]
        (noise,) = encoder(sample, t, encoder_hidden_states)
        noise = noise.to(sample.dtype)
        return UNet2DConditionOutput(sample=noise) if return_dict else (noise,)

    unet.forward = forward
