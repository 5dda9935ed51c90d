"""Editor: mask-grounded edits with an inpainting diffusion model, and whole-image instruction edits.

    remove: the red circle              segmenter mask (grown) -> filled with background
    replace: the red circle with a blue square     the mask's box -> the new object
    recolour: the red circle to blue    the mask -> the object in the new colour
    move: the red circle to the left    object pixels moved by their own width / height; the hole is filled
    add: a red circle                   the call's <Region> box -> the new object
    instruct: make it night             InstructPix2Pix on the whole image (when the profile configures one)

Each edit runs on a square crop around its region at the model's resolution (the Inpaint-Anything pattern) and is
composited back, so every pixel outside the returned region is the input's, byte for byte.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import VitronInputError
from ..masks import box_to_mask, mask_to_box
from .base import Frame, SpecialistCall, SpecialistOutput
from .diffusion import (
    EditorConfig,
    HybridConditioning,
    composite,
    denoise,
    from_model,
    grow_mask,
    load_conditioner_for,
    load_pipeline,
    pipeline_modules,
    run_each,
    square_crop,
    to_model,
)

MOVES = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
_MOVE_RE = re.compile(r"^(?P<target>.+?)\s+(?:to\s+the\s+|to\s+)?(?P<direction>left|right|up|down)$", re.IGNORECASE)


@dataclass(frozen=True)
class EditPlan:
    """What one edit call will do, worked out before any model runs (so bad calls fail fast)."""

    task: str
    target: str  # the object the edit is about ("" for add and instruct)
    text: str  # the text half of the conditioning: what the repainted region should show
    negative: str  # what it should not show
    region: np.ndarray  # (H, W) bool: the pixels the edit may change
    fill: np.ndarray  # (H, W) bool: the pixels the model repaints (move: the hole; else the region)
    start: np.ndarray  # (H, W, 3) uint8: the image the model repaints (move: object already moved)


def plan_edit(call: SpecialistCall, image: np.ndarray, config: EditorConfig) -> EditPlan:
    """Parse an edit call and work out its region, text and starting image. Raises VitronInputError naming the
    problem: an unknown edit, an instruction missing its parts, no mask, or a region that leaves the image."""
    height, width = image.shape[:2]
    task, instruction = call.task, " ".join(call.instruction.split())
    mask = call.mask
    if task in ("remove", "replace", "recolour", "move"):
        if mask is None or mask.shape != (height, width) or not mask.any():
            raise VitronInputError(f"{task} needs the segmenter's mask of the object; no object was found")
    if task == "remove":
        region = grow_mask(mask, config.grow)
        return EditPlan(task, instruction, config.background_prompt, instruction, region, region, image)
    if task == "recolour":
        target, sep, colour = instruction.rpartition(" to ")
        if not sep or not target.strip() or not colour.strip():
            raise VitronInputError(f"recolour instruction {instruction!r} must read 'OBJECT to COLOUR'")
        region = mask.copy()
        return EditPlan(task, target.strip(), f"{target.strip()} painted {colour.strip()}", target.strip(), region,
                        region, image)
    if task == "replace":
        target, sep, new = instruction.partition(" with ")
        if not sep or not target.strip() or not new.strip():
            raise VitronInputError(f"replace instruction {instruction!r} must read 'OBJECT with NEW OBJECT'")
        region = grow_mask(mask, config.grow) | box_to_mask(mask_to_box(mask), height, width)
        return EditPlan(task, target.strip(), new.strip(), target.strip(), region, region, image)
    if task == "move":
        match = _MOVE_RE.match(instruction)
        if not match:
            raise VitronInputError(f"move instruction {instruction!r} must read 'OBJECT to the left|right|up|down'")
        dx, dy = MOVES[match.group("direction").lower()]
        x1, y1, x2, y2 = mask_to_box(mask)
        shift_x, shift_y = dx * int(round(x2 - x1)), dy * int(round(y2 - y1))
        if not (0 <= x1 + shift_x and x2 + shift_x <= width and 0 <= y1 + shift_y and y2 + shift_y <= height):
            raise VitronInputError(
                f"moving {match.group('target')!r} {match.group('direction')} by its size takes it outside the image"
            )
        moved = np.zeros_like(mask)
        moved[max(shift_y, 0): height + min(shift_y, 0), max(shift_x, 0): width + min(shift_x, 0)] = mask[
            max(-shift_y, 0): height - max(shift_y, 0), max(-shift_x, 0): width - max(shift_x, 0)
        ]
        start = image.copy()
        start[moved] = image[np.roll(np.roll(moved, -shift_y, axis=0), -shift_x, axis=1)]
        hole = grow_mask(mask, config.grow) & ~moved
        target = match.group("target")
        return EditPlan(task, target, config.background_prompt, target, hole | moved, hole, start)
    if task == "add":
        if call.box_xyxy is None:
            raise VitronInputError("add needs a <Region> box saying where the new object goes")
        if not instruction:
            raise VitronInputError("add needs a description of the new object")
        region = box_to_mask(call.box_xyxy, height, width)
        if not region.any():
            raise VitronInputError(f"add region {call.box_xyxy} covers no pixel of the {width}x{height} image")
        return EditPlan(task, "", instruction, "", region, region, image)
    raise VitronInputError(f"editor has no task {task!r}; tasks: remove, replace, recolour, move, add, instruct")


class DiffusionEditor:
    name = "editor"

    def __init__(self, inpaint, conditioning: HybridConditioning, config: EditorConfig, instruct=None):
        self.inpaint, self.conditioning, self.config, self.instruct = inpaint, conditioning, config, instruct
        self.tasks = frozenset({"remove", "replace", "recolour", "move", "add"} | ({"instruct"} if instruct else set()))

    @classmethod
    def from_config(cls, config: EditorConfig, profile, device: str = "cpu", progress=print) -> DiffusionEditor:
        hint = profile.missing_hint()
        dtype = profile.runtime.dtype_for(config.dtype, device)
        inpaint = load_pipeline("inpaint", config.model, config.revision, device, dtype, hint, profile.runtime,
                              config.resolution, progress)
        conditioner = load_conditioner_for(config, Path(inpaint.config._name_or_path))
        instruct = None
        if config.instruct_model is not None:
            instruct = load_pipeline("instruct", config.instruct_model, config.revision, device, dtype, hint)
        return cls(inpaint, HybridConditioning(inpaint, conditioner, config.conditioning), config, instruct)

    def exportables(self) -> list:
        from .diffusion import unet_export

        return [unet_export(self.inpaint.unet, self.config.resolution, self.inpaint.vae_scale_factor)]

    def encoders(self) -> dict:
        return {"unet": self.inpaint.unet_encoder}

    def modules(self) -> list:
        modules = pipeline_modules(self.inpaint) + (pipeline_modules(self.instruct) if self.instruct else [])
        return modules + [m for m in (self.conditioning.conditioner,) if m is not None]

    @property
    def signal_dim(self) -> int | None:
        """Width of the LLM hidden state the signal projector reads (None: no projector)."""
        return self.conditioning.signal_dim

    def with_conditioning(self, mode: str) -> DiffusionEditor:
        """The same editor (same loaded models) conditioned by "text", "signal" or "both": the hybrid ablation."""
        config = dataclasses.replace(self.config, conditioning=mode)
        config.check("editor")
        conditioning = HybridConditioning(self.inpaint, self.conditioning.conditioner, mode)
        return type(self)(self.inpaint, conditioning, config, self.instruct)

    def run(self, frame: Frame, calls: Sequence[SpecialistCall]) -> list[SpecialistOutput | Exception]:
        return run_each(calls, lambda call: self.edit(frame, call))

    def edit(self, frame: Frame, call: SpecialistCall) -> SpecialistOutput:
        """One edit of `frame.image` -> SpecialistOutput with the edited image and the region it changed."""
        image = frame.image
        if call.task == "instruct":
            if self.instruct is None:
                raise VitronInputError("this profile's editor has no whole-image instruction model (instruct_model)")
            edited = self._instruct(image, call, frame.on_step)
            region = np.ones(image.shape[:2], bool)
            return SpecialistOutput(region[None], np.ones(1, np.float32), (call.instruction,), edited[None])
        plan = plan_edit(call, image, self.config)
        repainted = self._inpaint(plan.start, plan.fill, plan.text, plan.negative, call.signal, frame.on_step)
        edited = composite(image, composite(plan.start, repainted, plan.fill), plan.region)
        label = f"{plan.task}: {call.instruction}"
        return SpecialistOutput(plan.region[None], np.ones(1, np.float32), (label,), edited[None])

    def _inpaint(self, image, fill, text, negative, signal, on_step) -> np.ndarray:
        """Repaint `fill` of `image` on a crop at the model's side; returns the full image with the crop's pixels
        replaced (the caller composites only the region back)."""
        from PIL import Image

        cfg = self.config
        crop = square_crop(mask_to_box(fill), image.shape[:2], cfg.context, cfg.resolution)
        x1, y1, x2, y2 = crop
        patch, patch_fill = image[y1:y2, x1:x2], fill[y1:y2, x1:x2]
        prompt_embeds, negative_embeds = self.conditioning(text, signal, negative)
        result = denoise(
            self.inpaint, cfg, on_step,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_embeds,
            image=Image.fromarray(to_model(patch, cfg.resolution)),
            mask_image=Image.fromarray(to_model(patch_fill, cfg.resolution, mask=True) * 255),
            height=cfg.resolution,
            width=cfg.resolution,
        )
        out = image.copy()
        out[y1:y2, x1:x2] = from_model(result, patch.shape[:2])
        return out

    def _instruct(self, image, call, on_step) -> np.ndarray:
        from PIL import Image

        cfg = self.config
        if not call.instruction:
            raise VitronInputError("instruct needs the edit to make, e.g. 'make it night'")
        result = denoise(
            self.instruct, cfg, on_step,
            prompt=call.instruction,
            image=Image.fromarray(to_model(image, cfg.resolution)),
            image_guidance_scale=cfg.image_guidance_scale,
        )
        return from_model(result, image.shape[:2])
