"""Video generator: text-to-video and image-to-video on AnimateDiff (a Stable Diffusion UNet with motion modules).

    text_to_video: a red circle moving to the left           a new clip from the description
    image_to_video: the cup moves to the left                 a clip that starts from the query's image

Text-to-video is diffusers' `AnimateDiffPipeline` (the base model's UNet turned into a `UNetMotionModel` by a
`MotionAdapter`). Image-to-video is `AnimateDiffSparseControlNetPipeline` on the same components with a SparseCtrl
RGB control net: the query image, encoded by the VAE, conditions frame 0, so the clip starts from what the camera
saw and the text says how it moves. Both pipelines are tested and current in diffusers; VITRON's own choices
(ZeroScope, I2VGen-XL) are a text-to-video model without image conditioning and a pipeline diffusers deprecated.
Stable Video Diffusion was the other candidate for image-to-video; it takes no text, so "move it to the left" could
not be asked of it.

The clip is generated at the base model's resolution along the image's longer side (image-to-video keeps the image's
aspect) and returned at the query image's size for image-to-video. Conditioning is text only: no published motion
model has a VITRON signal projector.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import CheckpointLoadError, VitronInputError
from .base import Frame, SpecialistCall, SpecialistOutput
from .diffusion import HybridConditioning, from_model, load_once, pipeline_modules, run_each, step_callback, to_uint8


SCHEDULERS = ("animatediff", "checkpoint")


@dataclass(frozen=True)
class VideoGeneratorConfig:
    model: str  # local folder or hub id of a Stable Diffusion text-to-image pipeline (4-channel UNet)
    motion_adapter: str  # folder or hub id of an AnimateDiff MotionAdapter made for that base model
    # folder or hub id of a SparseCtrl RGB SparseControlNetModel (image-to-video); None: text-to-video only
    image_controlnet: str | None = None
    revision: str | None = None  # hub revision of `model` to pin
    dtype: str = "float16"  # used on CUDA; CPU always runs float32
    resolution: int = 512  # the longer side of the generated clip (the base model's native side)
    frames: int = 16  # frames per clip (AnimateDiff's motion modules are trained on 16)
    fps: float = 8.0  # the rate the clip is meant to play at (written into the mp4 and the result)
    steps: int = 25
    guidance_scale: float = 7.5
    seed: int = 0  # the same request gives the same clip
    conditioning_scale: float = 1.0  # how strongly the image holds frame 0 in image-to-video
    negative_prompt: str = ""
    # "animatediff": DDIM with the linear betas AnimateDiff's motion modules were trained with (their model cards'
    # settings, replacing a base SD folder's own scheduler); "checkpoint": the scheduler saved with `model` (the
    # shapes model, trained here with its own)
    scheduler: str = "animatediff"

    paths: ClassVar[tuple[str, ...]] = ("model", "motion_adapter", "image_controlnet")

    def check(self, where: str) -> None:
        if self.resolution < 8 or self.resolution % 8:
            raise VitronInputError(f"{where}.resolution: must be a positive multiple of 8, got {self.resolution}")
        if not 2 <= self.frames <= 64:
            raise VitronInputError(f"{where}.frames: must be 2-64 (a clip, within the motion modules' reach), got "
                                   f"{self.frames}")
        if self.steps < 1:
            raise VitronInputError(f"{where}.steps: must be at least 1, got {self.steps}")
        if self.fps <= 0:
            raise VitronInputError(f"{where}.fps: must be positive, got {self.fps}")
        if self.scheduler not in SCHEDULERS:
            raise VitronInputError(f"{where}.scheduler: expected one of {SCHEDULERS}, got {self.scheduler!r}")


def _load(config: VideoGeneratorConfig, device: str, dtype: str, hint: str, progress):
    import torch
    from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter, SparseControlNetModel

    from ..model.vitron_llm import resolve_model_path

    base = resolve_model_path(config.model, config.revision, hint, what="video generator base model")
    adapter_folder = resolve_model_path(config.motion_adapter, None, hint, what="motion adapter")
    torch_dtype = getattr(torch, dtype)  # float32 on CPU (the runtime's dtype_for)
    progress(f"loading AnimateDiff: {config.model} + motion adapter {config.motion_adapter}")
    try:
        adapter = MotionAdapter.from_pretrained(str(adapter_folder), dtype=torch_dtype)
        pipe = AnimateDiffPipeline.from_pretrained(str(base), motion_adapter=adapter, dtype=torch_dtype)
    except Exception as exc:  # missing parts, a base whose UNet the adapter does not fit, corrupt weights
        raise CheckpointLoadError(f"cannot load AnimateDiff from {base} + {adapter_folder}: "
                                  f"{type(exc).__name__}: {exc}") from None
    if pipe.unet.config.in_channels != 4:
        raise CheckpointLoadError(f"{base}: AnimateDiff needs a text-to-image UNet (4 input channels), this one has "
                                  f"{pipe.unet.config.in_channels} (an inpainting checkpoint?)")
    if config.frames > adapter.config.motion_max_seq_length:
        raise CheckpointLoadError(f"the profile asks for {config.frames} frames but the motion adapter "
                                  f"{config.motion_adapter} reaches {adapter.config.motion_max_seq_length}")
    if config.scheduler == "animatediff":  # the scheduler AnimateDiff's motion modules were trained with
        if pipe.scheduler.config.get("prediction_type", "epsilon") != "epsilon":
            raise CheckpointLoadError(f"{base} was trained to predict {pipe.scheduler.config.prediction_type!r}, not "
                                      "noise: set `scheduler: checkpoint` to keep the scheduler it was trained with")
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, beta_schedule="linear", clip_sample=False,
                                                   timestep_spacing="linspace", steps_offset=1)
    # the adapter's weights now live in the UNetMotionModel: drop the pipeline's second copy
    pipe.register_modules(motion_adapter=None)
    del adapter
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    image_pipe = None
    if config.image_controlnet is not None:
        from diffusers import AnimateDiffSparseControlNetPipeline

        folder = resolve_model_path(config.image_controlnet, None, hint, what="SparseCtrl RGB control net")
        try:
            controlnet = SparseControlNetModel.from_pretrained(str(folder), dtype=torch_dtype)
        except Exception as exc:
            raise CheckpointLoadError(f"cannot load SparseControlNetModel from {folder}: "
                                      f"{type(exc).__name__}: {exc}") from None
        if config.frames > controlnet.config.motion_max_seq_length:
            raise CheckpointLoadError(f"the profile asks for {config.frames} frames but the control net {folder} "
                                      f"reaches {controlnet.config.motion_max_seq_length}")
        if not controlnet.config.use_simplified_condition_embedding:
            raise CheckpointLoadError(f"{folder}: image-to-video needs SparseCtrl's RGB control net (conditioned on "
                                      "VAE latents, use_simplified_condition_embedding), this one takes sketches")
        image_pipe = AnimateDiffSparseControlNetPipeline(
            vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
            motion_adapter=None, controlnet=controlnet.to(device),
            scheduler=type(pipe.scheduler).from_config(pipe.scheduler.config),
        )
        image_pipe.set_progress_bar_config(disable=True)
    pipe.image_pipe = image_pipe
    return pipe


class VideoGenerator:
    name = "video_generator"

    def __init__(self, pipe, config: VideoGeneratorConfig):
        self.pipe, self.config = pipe, config
        self.image_pipe = pipe.image_pipe
        self.conditioning = HybridConditioning(pipe, None, "text")
        self.tasks = frozenset({"text_to_video"} | ({"image_to_video"} if self.image_pipe is not None else set()))
        unet = pipe.unet.config
        # a side must be a whole number of the UNet's lowest-resolution latent cells, and of 8 px (the pipelines check)
        self.multiple = math.lcm(8, pipe.vae_scale_factor * 2 ** (len(unet.block_out_channels) - 1))

    @classmethod
    def from_config(cls, config: VideoGeneratorConfig, profile, device: str = "cpu", progress=print) -> VideoGenerator:
        hint = profile.missing_hint()
        dtype = profile.runtime.dtype_for(config.dtype, device)
        key = ("animatediff", config.model, config.motion_adapter, config.image_controlnet, config.revision,
               config.scheduler, config.frames, device, dtype)
        return cls(load_once(key, lambda: _load(config, device, dtype, hint, progress)), config)

    def modules(self) -> list:
        extra = [self.image_pipe.controlnet] if self.image_pipe is not None else []
        return pipeline_modules(self.pipe) + extra

    def run(self, frame: Frame, calls: Sequence[SpecialistCall]) -> list[SpecialistOutput | Exception]:
        return run_each(calls, lambda call: self.generate(call, frame.image, frame.on_step))

    def size_for(self, image_hw: tuple[int, int] | None) -> tuple[int, int]:
        """(height, width) to generate at: `resolution` along the longer side, the image's aspect, whole cells."""
        side, unit = self.config.resolution, self.multiple
        if image_hw is None:
            return side, side
        height, width = image_hw
        scale = side / max(height, width)
        return (max(unit, int(round(height * scale / unit)) * unit), max(unit, int(round(width * scale / unit)) * unit))

    def generate(self, call: SpecialistCall, image: np.ndarray | None = None, on_step=None) -> SpecialistOutput:
        """A clip (frames, H, W, 3) uint8 in `images`; every frame's region is the whole frame (all synthetic)."""
        import torch

        if call.task not in self.tasks:
            have = "" if self.image_pipe is not None else " (this profile has no image_controlnet: no image-to-video)"
            raise VitronInputError(f"video_generator has no task {call.task!r}; tasks: {sorted(self.tasks)}{have}")
        if not call.instruction.strip():
            raise VitronInputError(f"{call.task} needs a description of the clip (the generator is conditioned by text)")
        cfg = self.config
        prompt_embeds, negative_embeds = self.conditioning(call.instruction, None, cfg.negative_prompt)
        inputs = dict(
            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, num_frames=cfg.frames,
            num_inference_steps=cfg.steps, guidance_scale=cfg.guidance_scale, output_type="np",
            generator=torch.Generator("cpu").manual_seed(cfg.seed),
            callback_on_step_end=step_callback(on_step, cfg.steps),
        )
        if call.task == "image_to_video":
            if (image is None or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8
                    or min(image.shape[:2]) < 8):
                raise VitronInputError("image_to_video needs the query's image as (H, W, 3) uint8 RGB, at least 8 px a "
                                       "side")
            height, width = self.size_for(image.shape[:2])
            start = from_model(image, (height, width))
            from PIL import Image

            with self.pipe.run_lock, torch.inference_mode():
                frames = self.image_pipe(height=height, width=width, conditioning_frames=[Image.fromarray(start)],
                                         controlnet_frame_indices=[0], controlnet_conditioning_scale=cfg.conditioning_scale,
                                         **inputs).frames[0]
            clip = _clip(frames)
            clip = np.stack([from_model(f, image.shape[:2]) for f in clip])  # back at the camera's size
        else:
            height, width = self.size_for(None)
            with self.pipe.run_lock, torch.inference_mode():
                clip = _clip(self.pipe(height=height, width=width, **inputs).frames[0])
        full = np.ones(clip.shape[:3], bool)
        return SpecialistOutput(full, np.ones(len(clip), np.float32), (call.instruction,), clip, fps=cfg.fps)


def _clip(frames) -> np.ndarray:
    frames = np.asarray(frames, np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise CheckpointLoadError(f"the video pipeline returned frames of shape {frames.shape}, expected (T, H, W, 3)")
    return to_uint8(frames)
