"""SAM 2 tracker as a specialist: propagates a key-frame mask through a clip's frames (video referring segmentation).

The LLM's tracking invocation is grounded on the key frame by the segmenter first (its [SEG] embedding or box), as
VITRON routes a video request; this specialist then follows that mask frame by frame with a fresh stream, so one
query's memory never leaks into another's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..config import RuntimeConfig
from ..backends import Encoder, Exportable
from ..errors import VitronInputError
from ..tracking.state import ObjectPrompt
from ..tracking.stream_tracker import StreamTracker
from .base import Frame, SpecialistCall, SpecialistOutput


@dataclass(frozen=True)
class TrackerConfig:
    """SAM 2 video tracker on a live stream, with a bounded memory."""

    model: str  # local folder of a transformers Sam2Video checkpoint, or a hub id (facebook/sam2.1-hiera-tiny)
    revision: str | None = None  # hub revision to pin, when `model` is a hub id
    dtype: str = "float16"  # used on CUDA; CPU always runs float32
    # SAM 2 reads the last num_maskmem - 1 (6) frame memories and up to 15 object pointers; outputs older than this
    # window are dropped, so memory stays flat however long the stream runs. Must cover what the model reads.
    memory_window: int = 16
    max_conditioning_frames: int = 3  # prompted frames kept per object: the first and the most recent re-acquisitions
    presence_threshold: float = 0.0  # object-score logit above which the object counts as visible in a frame
    lost_after: int = 15  # frames an object may stay unseen (occluded) before it counts as lost
    reacquire_interval: int = 10  # frames between attempts to re-ground a lost object's original request
    min_mask_area: int = 1  # a visible object needs at least this many mask pixels

    paths: ClassVar[tuple[str, ...]] = ("model",)

    def check(self, where: str) -> None:
        if self.memory_window < 1 or self.max_conditioning_frames < 1:
            raise VitronInputError(f"{where}: memory_window and max_conditioning_frames must be at least 1")


class Sam2Tracker:
    name = "tracker"
    tasks = frozenset({"tracking"})

    def __init__(self, model, processor, config: TrackerConfig, device: str = "cpu", runtime: RuntimeConfig | None = None,
                 progress=print):
        """The image encoder (Hiera + FPN, the per-frame heavy part) runs on `runtime`'s backend."""
        from ..backends import load_encoder

        runtime = runtime or RuntimeConfig()
        self.model, self.processor, self.config, self.device = model, processor, config, device
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        self.image_encoder = load_encoder(sam2_vision_export(model), runtime, device, dtype, progress)
        if self.image_encoder.backend != "torch" or runtime.compile:
            install_sam2_vision(model, self.image_encoder)

    @classmethod
    def from_profile(cls, profile, device: str = "cpu", progress=print) -> Sam2Tracker:
        from ..model.sam2_loader import load_sam2_video

        cfg = profile.section("tracker")
        hint = profile.missing_hint()
        dtype = profile.runtime.dtype_for(cfg.dtype, device)
        model, processor = load_sam2_video(cfg.model, cfg.revision, device, dtype, hint)
        return cls(model, processor, cfg, device, profile.runtime, progress)

    def encoders(self) -> dict:
        return {self.image_encoder.name: self.image_encoder}

    def modules(self) -> list:
        return [self.model]

    def exportables(self) -> list:

        return [sam2_vision_export(self.model)]

    def stream(self, grounder=None, defer_grounding: bool = False) -> StreamTracker:
        """A new live-stream tracker on this specialist's model (the ROS node keeps one per camera, grounding
        deferred so the LLM never runs on the frame path)."""
        return StreamTracker(self.model, self.processor, self.config, self.device, grounder, defer_grounding)

    def run(self, frame: Frame, calls: Sequence[SpecialistCall]) -> list[SpecialistOutput | Exception]:
        """Each call's mask (on `frame.image`) -> its mask in every frame of `frame.clip` (or just the key frame)."""
        clip = frame.clip or (frame.image,)
        outputs: list[SpecialistOutput | Exception] = []
        tracker = self.stream()
        ids: list[str | None] = []
        for call in calls:
            try:
                if call.task not in self.tasks:
                    raise VitronInputError(f"tracker has no task {call.task!r}; tasks: {sorted(self.tasks)}")
                if call.mask is None and call.box_xyxy is None and not len(call.points_xy):
                    raise VitronInputError("tracking needs a mask, box or points on the key frame")
                prompt = (ObjectPrompt(mask=call.mask) if call.mask is not None else
                          ObjectPrompt(points_xy=call.points_xy if len(call.points_xy) else None,
                                       point_labels=call.point_labels if len(call.points_xy) else None,
                                       box_xyxy=call.box_xyxy))
                ids.append(tracker.add_object(prompt))
                outputs.append(None)
            except VitronInputError as exc:
                ids.append(None)
                outputs.append(exc)
        if not any(ids):
            return outputs
        sequences = {object_id: ([], []) for object_id in ids if object_id}
        for image in clip:
            tracks = tracker.step(image)
            for state in tracks.objects:
                masks, scores = sequences[state.object_id]
                masks.append(state.mask)
                scores.append(state.score if state.mask.any() else 0.0)
        for i, object_id in enumerate(ids):
            if object_id:
                masks, scores = sequences[object_id]
                outputs[i] = SpecialistOutput(masks=np.stack(masks), scores=np.asarray(scores, np.float32))
        return outputs


# -- exports: trace-friendly wrappers for the backends (ONNX Runtime, TensorRT), checked in tests/test_backends.py --

def sam2_vision_export(model) -> Exportable:
    """SAM 2's Hiera + FPN: (1, 3, S, S) -> the FPN levels, then their position encodings (high to low resolution)."""
    import torch
    from torch import nn

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
    from torch import nn
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
