"""Typed results. Numpy in, numpy out: masks are (H, W) bool in original image pixels, boxes XYXY pixels."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .invocation import Invocation
from .masks import rle_encode

# Which half of VITRON's hybrid message produced a mask.
SOURCE_EMBEDDING = "signal_embedding"  # projected [SEG] hidden state as a SAM prompt token
SOURCE_TEXT_BOX = "text_box"  # box the LLM wrote in <Region>, as a SAM box prompt
SOURCE_EMBEDDING_AND_BOX = "signal_embedding+text_box"
SOURCE_USER_PROMPT = "user_prompt"  # the user's point / box / scribble / mask
SOURCE_EVERYTHING = "everything"  # automatic mask generation


@dataclass
class GroundedMask:
    label: str  # what the mask shows, for display (phrase, instruction or request)
    mask: np.ndarray  # (H, W) bool
    box_xyxy: tuple[float, float, float, float]  # tight box of `mask`, pixels
    score: float  # the specialist's quality estimate
    source: str  # one of the SOURCE_* values
    phrase: str | None = None  # answer phrase this mask grounds (<p> phrase </p>), if any
    invocation_index: int | None = None  # index into VitronResult.invocations; None for user prompts

    @property
    def rle(self) -> dict:
        """COCO compressed RLE of `mask`."""
        return rle_encode(self.mask)

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "phrase": self.phrase,
            "score": round(float(self.score), 6),
            "box_xyxy": [round(float(v), 3) for v in self.box_xyxy],
            "source": self.source,
            "invocation_index": self.invocation_index,
            "area": int(self.mask.sum()),
            "rle": self.rle,
        }


@dataclass
class MaskTrack:
    """One grounded object followed through a clip: video referring segmentation's answer."""

    label: str
    masks: np.ndarray  # (T, H, W) bool, one per clip frame from the key frame on
    scores: np.ndarray  # (T,) float32 presence scores; 0 where the object is not visible
    invocation_index: int | None = None  # the invocation whose key-frame mask started this track

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "invocation_index": self.invocation_index,
            "frames": [
                {"score": round(float(score), 6), "area": int(mask.sum()), "rle": rle_encode(mask)}
                for mask, score in zip(self.masks, self.scores, strict=True)
            ],
        }


@dataclass
class VitronResult:
    answer: str  # text for the user: invocation tags removed, grounded phrases kept as words
    raw_reply: str  # the LLM's reply as generated
    image_hw: tuple[int, int]
    masks: list[GroundedMask] = field(default_factory=list)
    invocations: list[Invocation] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # format breaks, failed calls: the query still answers
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, plus "total"
    profile: str = ""
    tracks: list[MaskTrack] = field(default_factory=list)  # clip queries: each grounded mask through the clip
    clip_frames: int = 0  # frames a clip query saw (0: a still image)

    @property
    def grounded_phrases(self) -> list[tuple[str, GroundedMask]]:
        """(phrase, mask) pairs of a grounded conversation, in answer order."""
        return [(m.phrase, m) for m in self.masks if m.phrase is not None]

    def to_json(self) -> dict:
        return {
            "profile": self.profile,
            "answer": self.answer,
            "raw_reply": self.raw_reply,
            "image_size": {"height": self.image_hw[0], "width": self.image_hw[1]},
            "masks": [m.to_json() for m in self.masks],
            "clip_frames": self.clip_frames,
            "tracks": [t.to_json() for t in self.tracks],
            "invocations": [asdict(i) for i in self.invocations],
            "errors": list(self.errors),
            "timings_s": {k: round(v, 6) for k, v in self.timings.items()},
        }
