"""Generator: text-to-image and layout-grounded generation on an inpainting diffusion model.

    generation: a red circle left of a blue square          the whole canvas, from the text and/or [SEG]
    layout: <p> a red circle </p> <Region>[0.1, 0.1, 0.4, 0.4]</Region> <p> a blue square </p> <Region>[...]</Region>

A layout first draws the background over the whole canvas, then each phrase inside its box (boxes are 0-1 of the
generated image, XYXY): one inpainting pass per object, so every object lands where the LLM put it. This replaces
GLIGEN's gated attention (deprecated in diffusers 0.42) with passes of a model diffusers keeps tested.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import VitronInputError
from ..geometry import Letterbox
from ..invocation import parse_box
from ..masks import box_to_mask
from .base import Frame, SpecialistCall, SpecialistOutput
from .diffusion import GeneratorConfig, HybridConditioning, denoise, load_conditioner_for, load_pipeline, pipeline_modules, run_each

_LAYOUT_RE = re.compile(r"<p>(?P<phrase>.*?)</p>\s*<region>(?P<box>.*?)</region>", re.IGNORECASE | re.DOTALL)


def parse_layout(instruction: str, side: int) -> list[tuple[str, tuple[float, float, float, float]]]:
    """'<p> phrase </p> <Region>[x1, y1, x2, y2]</Region> ...' (boxes 0-1) -> [(phrase, pixel box on the canvas)]."""
    items, errors = [], []
    for match in _LAYOUT_RE.finditer(instruction):
        phrase = " ".join(match.group("phrase").split())
        box, error = parse_box(match.group("box"), Letterbox(height=side, width=side), "normalized")
        if error or not phrase:
            errors.append(f"layout object {phrase!r}: {error or 'empty phrase'}")
        else:
            items.append((phrase, box))
    if errors:
        raise VitronInputError("; ".join(errors))
    if not items:
        raise VitronInputError(
            f"layout instruction {instruction!r} has no '<p> phrase </p> <Region>[x1, y1, x2, y2]</Region>' object"
        )
    return items


class DiffusionGenerator:
    name = "generator"
    tasks = frozenset({"generation", "layout"})

    def __init__(self, pipe, conditioning: HybridConditioning, config: GeneratorConfig):
        self.pipe, self.conditioning, self.config = pipe, conditioning, config

    @classmethod
    def from_config(cls, config: GeneratorConfig, profile, device: str = "cpu", progress=print) -> DiffusionGenerator:
        hint = profile.missing_hint()
        dtype = profile.runtime.dtype_for(config.dtype, device)
        pipe = load_pipeline("inpaint", config.model, config.revision, device, dtype, hint, profile.runtime,
                              config.resolution, progress)
        conditioner = load_conditioner_for(config, Path(pipe.config._name_or_path))
        return cls(pipe, HybridConditioning(pipe, conditioner, config.conditioning), config)

    def exportables(self) -> list:
        from .diffusion import unet_export

        return [unet_export(self.pipe.unet, self.config.resolution, self.pipe.vae_scale_factor)]

    def encoders(self) -> dict:
        return {"unet": self.pipe.unet_encoder}

    def modules(self) -> list:
        return pipeline_modules(self.pipe) + [m for m in (self.conditioning.conditioner,) if m is not None]

    @property
    def signal_dim(self) -> int | None:
        return self.conditioning.signal_dim

    def run(self, frame: Frame, calls: Sequence[SpecialistCall]) -> list[SpecialistOutput | Exception]:
        return run_each(calls, lambda call: self.generate(call, frame.on_step))

    def generate(self, call: SpecialistCall, on_step=None) -> SpecialistOutput:
        """A new (resolution, resolution, 3) uint8 image; its region is the whole canvas."""
        side = self.config.resolution
        if call.task == "generation":
            passes = [(call.instruction, np.ones((side, side), bool))]
        elif call.task == "layout":
            passes = [(self.config.background_prompt, np.ones((side, side), bool))]
            passes += [(phrase, box_to_mask(box, side, side)) for phrase, box in parse_layout(call.instruction, side)]
        else:
            raise VitronInputError(f"generator has no task {call.task!r}; tasks: {sorted(self.tasks)}")
        if not call.instruction.strip() and call.signal is None:
            raise VitronInputError(f"{call.task} needs a description or a signal embedding")
        canvas = np.full((side, side, 3), 127, np.uint8)
        total = len(passes) * self.config.steps
        for index, (text, region) in enumerate(passes):
            offset = index * self.config.steps
            step = None if on_step is None else (lambda i, n, offset=offset: on_step(offset + i, total))
            # a layout's background pass is text only: the [SEG] signal describes the objects, not what is behind them
            signal = None if (call.task == "layout" and index == 0) else call.signal
            painted = self._paint(canvas, region, text, signal, step)
            canvas = np.where(region[..., None], painted, canvas).astype(np.uint8)
        full = np.ones((side, side), bool)
        label = call.instruction if call.task == "generation" else "; ".join(p for p, _ in passes[1:])
        return SpecialistOutput(full[None], np.ones(1, np.float32), (label or "generated",), canvas[None])

    def _paint(self, canvas, region, text, signal, on_step) -> np.ndarray:
        from PIL import Image

        cfg = self.config
        prompt_embeds, negative_embeds = self.conditioning(text or None, signal)
        return denoise(
            self.pipe, cfg, on_step,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_embeds,
            image=Image.fromarray(canvas),
            mask_image=Image.fromarray(region.astype(np.uint8) * 255),
            height=cfg.resolution,
            width=cfg.resolution,
        )
