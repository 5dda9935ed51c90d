"""SAM 2 tracker as a specialist: propagates a key-frame mask through a clip's frames (video referring segmentation).

The LLM's tracking invocation is grounded on the key frame by the segmenter first (its [SEG] embedding or box), as
VITRON routes a video request; this specialist then follows that mask frame by frame with a fresh stream, so one
query's memory never leaks into another's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import RuntimeConfig, TrackerConfig
from ..errors import VitronInputError
from ..tracking.state import ObjectPrompt
from ..tracking.stream_tracker import StreamTracker
from .base import Frame, SpecialistCall, SpecialistOutput


class Sam2Tracker:
    name = "tracker"
    tasks = frozenset({"tracking"})

    def __init__(self, model, processor, config: TrackerConfig, device: str = "cpu", runtime: RuntimeConfig | None = None,
                 progress=print):
        """The image encoder (Hiera + FPN, the per-frame heavy part) runs on `runtime`'s backend."""
        from ..backends import load_encoder
        from ..model.exports import install_sam2_vision, sam2_vision_export

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
        from ..model.exports import sam2_vision_export

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
