"""Typed state of a tracking stream: what each object was started from, and what happened to it in each frame."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class ObjectStatus(str, enum.Enum):
    TRACKED = "tracked"  # visible in this frame, mask from SAM 2's memory (or from a prompt on this frame)
    OCCLUDED = "occluded"  # not visible for up to `lost_after` frames; SAM 2 keeps looking
    LOST = "lost"  # unseen for longer; re-grounded from its request every `reacquire_interval` frames if it has one


@dataclass(frozen=True)
class ObjectPrompt:
    """What starts (or re-starts) an object: exactly one of a language request, points, a box or a mask.

    Coordinates are pixels of the stream's frames: points (N, 2) XY with labels (N,) 1 = foreground, 0 = background;
    box XYXY; mask (H, W) bool.
    """

    request: str | None = None
    points_xy: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    box_xyxy: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None

    @property
    def kind(self) -> str:
        kinds = [
            name
            for name, value in (("request", self.request), ("points", self.points_xy), ("box", self.box_xyxy),
                                ("mask", self.mask))
            if value is not None
        ]
        return "+".join(kinds) if kinds else "none"


@dataclass
class ObjectFrameState:
    """One object in one frame."""

    object_id: str
    label: str  # the request, or "point" / "box" / "mask" for geometric prompts
    status: ObjectStatus
    score: float  # SAM 2's presence probability (sigmoid of its object-score logit), 0 when nothing was tried
    mask: np.ndarray  # (H, W) bool; empty unless tracked
    box_xyxy: tuple[float, float, float, float] | None  # tight box of `mask`, pixels; None when the mask is empty
    frames_unseen: int  # consecutive frames without the object (0 when tracked)
    prompted: bool = False  # a prompt (first add or a re-acquisition) conditioned this frame


@dataclass(frozen=True)
class GroundingRequest:
    """A language-started object that needs grounding on a frame (a tracker that defers grounding asks for it)."""

    object_id: str
    request: str  # what to find, e.g. 'the red mug'
    frame_index: int  # the frame it is to be found in
    image: np.ndarray  # that frame, (H, W, 3) uint8 RGB


@dataclass
class FrameTracks:
    """Everything the tracker says about one frame of the stream."""

    frame_index: int  # 0-based count of frames this stream has accepted
    image_hw: tuple[int, int]
    objects: list[ObjectFrameState] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # per-object failures (a re-grounding that found nothing...)
    seconds: float = 0.0  # wall time of this step
    # groundings the caller should run off the frame path and hand back with StreamTracker.resolve_grounding
    grounding_requests: list[GroundingRequest] = field(default_factory=list)

    def by_id(self, object_id: str) -> ObjectFrameState:
        for state in self.objects:
            if state.object_id == object_id:
                return state
        raise KeyError(object_id)

    def to_json(self) -> dict:
        from ..masks import rle_encode

        return {
            "frame_index": self.frame_index,
            "image_size": {"height": self.image_hw[0], "width": self.image_hw[1]},
            "objects": [
                {
                    "object_id": s.object_id,
                    "label": s.label,
                    "status": s.status.value,
                    "score": round(float(s.score), 6),
                    "box_xyxy": None if s.box_xyxy is None else [round(float(v), 3) for v in s.box_xyxy],
                    "frames_unseen": s.frames_unseen,
                    "prompted": s.prompted,
                    "area": int(s.mask.sum()),
                    "rle": rle_encode(s.mask),
                }
                for s in self.objects
            ],
            "errors": list(self.errors),
            "seconds": round(self.seconds, 6),
        }
