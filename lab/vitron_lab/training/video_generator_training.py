"""Train the `shapes` profile's video generator: AnimateDiff parts on ShapesWorld motion clips, from the editor.

    vitron-lab train --stage video_generator --config lab/config/train_shapes.yaml

Reuses the trained editor (`models/shapes/diffusion`): its VAE and text encoder as they are (frozen), and its
inpainting UNet turned into a text-to-image one (the 4 noisy-latent input channels kept; the mask channel, always 1
for a whole-canvas generation, and the masked-image channels, then the latent of an empty grey image, folded into the
bias). A `MotionAdapter` (AnimateDiff's motion modules, zero-initialised so training starts from the still-image model) turns
that UNet into a `UNetMotionModel`, and a SparseCtrl RGB `SparseControlNetModel` (initialised from the UNet's encoder,
as SparseCtrl is) learns to hold frame 0 to a given image for image-to-video. The UNet, motion modules and control net
train together on `shapes.motion` clips with their captions (a share with no caption, for guidance, and a share with
frame 0 given to the control net), predicting the clean latents like the editor (`prediction_type: sample`).

The result is saved as the published checkpoints are laid out, and loaded back through the same `from_pretrained`
calls: a StableDiffusionPipeline folder, a motion adapter folder and a control net folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitron_ros.core.errors import CheckpointLoadError, VitronInputError

from ..shapes.motion import motion_clip
from .diffusion_training import fit_adamw, images_to_tensor, make_scheduler

TRAIN_SEED_LIMIT = 1_000_000_000  # training clips below, evaluation clips above (as the other stages)
REPORT_FILE = "training_report.json"
# the saved folders, which a profile's model / motion_adapter / image_controlnet name
PARTS = ("base", "motion_adapter", "sparsectrl_rgb")


@dataclass(frozen=True)
class VideoGeneratorTrainConfig:
    frames: int = 8  # frames per clip (the profile's `frames` must match)
    steps: int = 1500  # updates
    clips_per_step: int = 4
    lr: float = 5.0e-4
    warmup_steps: int = 50
    uncond_share: float = 0.1  # clips with an empty caption (an unconditional model for guidance)
    image_share: float = 0.5  # clips with frame 0 given to the control net (image-to-video)
    max_objects: int = 2
    motion_heads: int = 4
    log_every: int = 50

    def check(self, where: str) -> None:
        if not 2 <= self.frames <= 32:
            raise VitronInputError(f"{where}.frames: must be 2-32 (the motion modules' reach), got {self.frames}")
        if self.steps < 1 or self.clips_per_step < 1 or self.warmup_steps < 1 or self.log_every < 1:
            raise VitronInputError(f"{where}: steps, clips_per_step, warmup_steps and log_every must be at least 1")
        if not (0.0 <= self.uncond_share < 1.0 and 0.0 <= self.image_share <= 1.0):
            raise VitronInputError(f"{where}: uncond_share must be in [0, 1) and image_share in [0, 1]")


def inpaint_to_text2image(inpaint_unet, empty_latent):
    """A 4-channel UNet2DConditionModel equal to `inpaint_unet` on a whole-canvas generation, away from the border:
    mask 1, and as the masked image the latent of an empty (grey) image, `empty_latent` (4,) per channel."""
    import torch
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_config({**inpaint_unet.config, "in_channels": 4})
    state = inpaint_unet.state_dict()
    weight = state["conv_in.weight"]  # (out, 9, k, k): noisy latents 0-3, mask 4, masked-image latents 5-8
    state["conv_in.weight"] = weight[:, :4].clone()
    constant = torch.cat([torch.ones(1), torch.as_tensor(empty_latent, dtype=weight.dtype)])  # channels 4-8
    with torch.no_grad():  # a constant input channel adds its value times the sum of its kernel
        state["conv_in.bias"] = state["conv_in.bias"] + (weight[:, 4:] * constant[None, :, None, None]).sum(dim=(1, 2, 3))
    unet.load_state_dict(state, strict=True)
    return unet


def empty_image_latent(vae):
    """(4,) the mean latent (scaled) of the empty grey canvas the inpainting pipeline masks a whole generation to."""
    import torch

    with torch.no_grad():
        zeros = torch.zeros(1, 3, vae.config.sample_size, vae.config.sample_size)
        return (vae.encode(zeros).latent_dist.mode() * vae.config.scaling_factor).mean(dim=(0, 2, 3))


def build_video_components(editor_folder: str | os.PathLike, config: VideoGeneratorTrainConfig, seed: int):
    """(the editor's pipeline, the new MotionAdapter, the UNetMotionModel, the SparseCtrl RGB control net)."""
    import torch
    from diffusers import MotionAdapter, SparseControlNetModel, StableDiffusionInpaintPipeline, UNetMotionModel

    try:
        editor = StableDiffusionInpaintPipeline.from_pretrained(str(editor_folder), safety_checker=None,
                                                                requires_safety_checker=False)
    except Exception as exc:  # not there, or not an inpainting pipeline
        raise CheckpointLoadError(f"cannot load the editor to start the video generator from ({editor_folder}): "
                                  f"{type(exc).__name__}: {exc}") from None
    torch.manual_seed(seed)
    unet2d = inpaint_to_text2image(editor.unet, empty_image_latent(editor.vae))
    cfg = unet2d.config
    adapter = MotionAdapter(block_out_channels=tuple(cfg.block_out_channels), motion_layers_per_block=cfg.layers_per_block,
                            motion_norm_num_groups=cfg.norm_num_groups, motion_num_attention_heads=config.motion_heads,
                            motion_max_seq_length=32)
    unet = UNetMotionModel.from_unet2d(unet2d, adapter)
    motion_types = [("CrossAttnDownBlockMotion" if "CrossAttn" in kind else "DownBlockMotion") for kind in cfg.down_block_types]
    controlnet = SparseControlNetModel(
        in_channels=4, conditioning_channels=4, down_block_types=tuple(motion_types),
        block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups, cross_attention_dim=cfg.cross_attention_dim,
        attention_head_dim=cfg.attention_head_dim, conditioning_embedding_out_channels=(16, 32),
        motion_num_attention_heads=config.motion_heads, use_simplified_condition_embedding=True,
    )
    # SparseCtrl starts from the base UNet's encoder: every 2-D weight copied, only its motion modules new
    controlnet.conv_in.load_state_dict(unet2d.conv_in.state_dict())
    controlnet.time_embedding.load_state_dict(unet2d.time_embedding.state_dict())
    for name in ("down_blocks", "mid_block"):
        result = getattr(controlnet, name).load_state_dict(getattr(unet2d, name).state_dict(), strict=False)
        if result.unexpected_keys or any("motion_modules" not in key for key in result.missing_keys):
            raise RuntimeError(f"control net {name} does not mirror the UNet's: {result}")
    return editor, adapter, unet, controlnet


def _clip_batch(rng: np.random.Generator, count: int, config: VideoGeneratorTrainConfig, size: int):
    return [motion_clip(int(rng.integers(0, TRAIN_SEED_LIMIT)), config.frames, size, config.max_objects)
            for _ in range(count)]


class VideoGeneratorTrainer:
    def __init__(self, editor_folder, config: VideoGeneratorTrainConfig, seed: int = 0, progress=print):
        self.config, self.seed, self.progress = config, seed, progress
        self.editor, self.adapter, self.unet, self.controlnet = build_video_components(editor_folder, config, seed)
        self.vae, self.text_encoder, self.tokenizer = self.editor.vae, self.editor.text_encoder, self.editor.tokenizer
        self.vae.requires_grad_(False)
        self.text_encoder.requires_grad_(False)
        self.scheduler = make_scheduler()  # the editor's: DDIM predicting the clean latent
        self.size = self.vae.config.sample_size

    def encode(self, clips):
        """(B, 4, F, h, w) scaled latents of the clips' frames."""
        import torch

        frames = [f for clip in clips for f in clip.frames]
        with torch.no_grad():
            latents = self.vae.encode(images_to_tensor(frames)).latent_dist.sample() * self.vae.config.scaling_factor
        b, f = len(clips), self.config.frames
        return latents.view(b, f, *latents.shape[1:]).permute(0, 2, 1, 3, 4).contiguous()

    def text(self, captions: list[str]):
        import torch

        ids = self.tokenizer(captions, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            return self.text_encoder(ids)[0]

    def loss(self, clips, rng: np.random.Generator, with_image: bool):
        """The denoising loss on `clips`; `with_image`: frame 0 given to the control net (image-to-video)."""
        import torch

        cfg = self.config
        latents = self.encode(clips)
        captions = ["" if rng.random() < cfg.uncond_share else clip.caption for clip in clips]
        # one copy of the caption's states per frame, as the AnimateDiff pipelines pass them
        embeds = self.text(captions).repeat_interleave(cfg.frames, dim=0)
        noise = torch.randn_like(latents)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (latents.shape[0],))
        noisy = self.scheduler.add_noise(latents, noise, t)
        residuals = {}
        if with_image:
            cond = torch.zeros_like(latents)
            cond[:, :, 0] = latents[:, :, 0]
            mask = torch.zeros_like(latents[:, :1])
            mask[:, :, 0] = 1.0
            down, mid = self.controlnet(noisy, t, encoder_hidden_states=embeds, controlnet_cond=cond,
                                        conditioning_mask=mask, return_dict=False)
            residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        prediction = self.unet(noisy, t, encoder_hidden_states=embeds, **residuals).sample
        return (prediction - latents).pow(2).mean()

    def train(self) -> dict:
        """`steps` updates; image-to-video batches (frame 0 to the control net) interleaved at `image_share`."""
        cfg = self.config
        rng = np.random.default_rng([self.seed, 300])
        losses = {True: [], False: []}

        def batch_loss(step):
            with_image = int((step + 1) * cfg.image_share) > int(step * cfg.image_share)
            loss = self.loss(_clip_batch(rng, cfg.clips_per_step, cfg, self.size), rng, with_image)
            losses[with_image].append(loss.item())
            return loss

        self.unet.train()
        self.controlnet.train()
        params = list(self.unet.parameters()) + list(self.controlnet.parameters())
        report = fit_adamw(params, batch_loss, cfg.steps, cfg.lr, cfg, "video generator", clip=True)
        self.unet.eval()
        self.controlnet.eval()
        for key, name in ((False, "text"), (True, "image")):
            report[f"loss_last_{name}"] = float(np.mean(losses[key][-cfg.log_every:])) if losses[key] else 0.0
        return report

    def save(self, folder: Path, report: dict) -> None:
        """base/ (StableDiffusionPipeline), motion_adapter/ (MotionAdapter), sparsectrl_rgb/ (SparseControlNetModel)."""
        from diffusers import MotionAdapter, StableDiffusionPipeline, UNet2DConditionModel

        from vitron_ros.core.model.weights import readable_by_all, replacing_folder

        unet2d = UNet2DConditionModel.from_config({k: v for k, v in self.editor.unet.config.items()
                                                   if not k.startswith("_")} | {"in_channels": 4})
        state = self.unet.state_dict()
        # the motion UNet's 2-D part is exactly a UNet2DConditionModel, the rest exactly the adapter's modules
        unet2d.load_state_dict({k: v for k, v in state.items() if "motion_modules" not in k}, strict=True)
        adapter = MotionAdapter.from_config(self.adapter.config)
        adapter.load_state_dict({k: v for k, v in state.items() if "motion_modules" in k}, strict=True)
        base = StableDiffusionPipeline(vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
                                       unet=unet2d, scheduler=self.scheduler, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        with replacing_folder(folder) as staging:
            for part, model in zip(PARTS, (base, adapter, self.controlnet)):
                model.save_pretrained(staging / part)
            (staging / REPORT_FILE).write_text(json.dumps(report, indent=1))
        readable_by_all(folder)


def train_video_generator(folder: str | os.PathLike, editor_folder: str | os.PathLike,
                          config: VideoGeneratorTrainConfig, seed: int = 0, progress=print) -> dict:
    """Train from the editor in `editor_folder` and save the three checkpoints under `folder`."""
    config.check("video_generator")
    trainer = VideoGeneratorTrainer(editor_folder, config, seed, progress)
    report = trainer.train()
    progress(f"video generator: {report['steps']} updates in {report['seconds'] / 60:.1f} min, loss "
             f"{report['loss_first']:.4f} -> text {report['loss_last_text']:.4f}, image {report['loss_last_image']:.4f}")
    trainer.save(Path(folder), report)
    return report
