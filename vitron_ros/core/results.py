"""Typed results. Numpy in, numpy out: masks are (H, W) bool in original image pixels, boxes XYXY pixels."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .invocation import Invocation
from .masks import mask_to_box, rle_encode

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
class SyntheticImage:
    """An image a specialist made: an edit of the query image, or a new one. Never an observation of the world:
    `synthetic` is always True, and everything that publishes it says so."""

    kind: str  # "edited" or "generated": the registry entry's topic
    image: np.ndarray  # (H, W, 3) uint8 RGB
    region: np.ndarray  # (H, W) bool: the pixels the specialist changed; all others equal the query image's
    label: str  # the edit or the description, e.g. "remove: the red circle"
    specialist: str  # registry name
    task: str
    invocation_index: int | None = None
    synthetic: bool = True

    def to_json(self) -> dict:
        return {**_made_json(self, self.image.shape[:2]), "region_area": int(self.region.sum()),
                "region_rle": rle_encode(self.region)}


def _made_json(made, size_hw) -> dict:
    """What a synthetic image and a synthetic clip say about themselves alike."""
    return {
        "kind": made.kind,
        "synthetic": made.synthetic,
        "label": made.label,
        "specialist": made.specialist,
        "task": made.task,
        "invocation_index": made.invocation_index,
        "size": {"height": size_hw[0], "width": size_hw[1]},
    }


@dataclass
class SyntheticVideo:
    """A clip a specialist made (text-to-video, image-to-video). Never an observation: `synthetic` is always True."""

    kind: str  # the registry entry's topic ("generated_video")
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    fps: float  # the rate it is meant to play at
    label: str  # the description it was made from
    specialist: str
    task: str  # text_to_video | image_to_video
    invocation_index: int | None = None
    synthetic: bool = True

    def to_json(self) -> dict:
        return {**_made_json(self, self.frames.shape[1:3]), "frames": len(self.frames), "fps": float(self.fps)}


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
    images: list[SyntheticImage] = field(default_factory=list)  # edited and generated images, invocation order
    videos: list[SyntheticVideo] = field(default_factory=list)  # generated clips, invocation order
    # invocation index -> (specialist, the SpecialistCall it served, mask included): what a video edit repeats on
    # later frames with each frame's tracked mask
    calls: dict[int, tuple[str, Any]] = field(default_factory=dict)

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
            "images": [i.to_json() for i in self.images],
            "videos": [v.to_json() for v in self.videos],
            "invocations": [asdict(i) for i in self.invocations],
            "errors": list(self.errors),
            "timings_s": {k: round(v, 6) for k, v in self.timings.items()},
        }


# Output kinds: how each kind of specialist output adds itself to a result. A registry entry names its kind; the
# pipeline calls the kind's collector and never looks at what a specialist returned.
def _collect_masks(result, entry, index, invocation, output, source, request) -> None:
    spec = entry.tasks.get(invocation.task)  # a grounded task of another specialist is not the grounder's own
    if spec is not None and spec.whole_image:
        result.masks.extend(
            GroundedMask(label, mask, mask_to_box(mask), float(score), source, None, index)
            for label, mask, score in zip(output.labels, output.masks, output.scores, strict=True)
        )
        return
    mask = output.masks[0]  # best-scored candidate
    label = invocation.phrase or invocation.instruction or request.strip()
    result.masks.append(GroundedMask(label, mask, mask_to_box(mask), float(output.scores[0]), source, invocation.phrase, index))


def _collect_tracks(result, entry, index, invocation, output, source, request) -> None:
    label = invocation.phrase or invocation.instruction or request.strip()
    result.tracks.append(MaskTrack(label, output.masks, output.scores, index))


def _collect_images(result, entry, index, invocation, output, source, request) -> None:
    for k, image in enumerate(output.images):
        label = output.labels[k] if k < len(output.labels) else invocation.instruction
        result.images.append(SyntheticImage(entry.topic, image, output.masks[k], label, entry.name, invocation.task, index))


def _collect_videos(result, entry, index, invocation, output, source, request) -> None:
    label = output.labels[0] if output.labels else invocation.instruction
    result.videos.append(SyntheticVideo(entry.topic, output.images, float(output.fps or 0.0), label, entry.name, invocation.task, index))


OUTPUT_KINDS = {"masks": _collect_masks, "tracks": _collect_tracks, "images": _collect_images, "videos": _collect_videos}
