"""Questions about ShapesWorld clips, with exact answers from the clip's ground truth.

    direction  "which way did the red circle move?"   -> "left" | "right" | "up" | "down"
    count      "how many objects are in the video?"   -> "2"
    colour     "what colour is the square?"           -> "blue"   (the only square)
    shape      "what shape is the red object?"        -> "circle" (the only red object)
    referring  "segment the red circle."              -> the segmenter invocation with its [SEG] (video referring
               segmentation: the pipeline grounds it on the key frame and tracks it through the clip)

Direction compares the object's centre in the first and last frames the video encoder sees; it is asked only where
one axis dominates (moved at least MIN_TRAVEL of the side along it, and twice as far as along the other), so every
question has one right answer.
"""

from __future__ import annotations

import numpy as np

from .instructions import Sample, normalise_answer
from .world import Clip

VIDEO_TASKS = ("video_qa",)
VIDEO_QA_TYPES = ("direction", "count", "colour", "shape")
VIDEO_KINDS = (*VIDEO_QA_TYPES, "referring")  # what clip batches train on
MIN_TRAVEL = 0.12  # fraction of the image side


def clip_name(clip: Clip, index: int) -> str | None:
    """'the red circle' when no other object of the clip shares colour and shape."""
    spec = clip.specs[index]
    twins = [s for s in clip.specs if s.colour == spec.colour and s.shape == spec.shape]
    return f"the {spec.colour} {spec.shape}" if len(twins) == 1 else None


def motion_word(clip: Clip, index: int, first: int, last: int) -> str | None:
    """Which way object `index` went between frames `first` and `last`, or None when that is not clear-cut."""
    side = clip.frames[0].shape[0]
    (x0, y0), (x1, y1) = clip.tracks[first][index], clip.tracks[last][index]
    dx, dy = (x1 - x0) / side, (y1 - y0) / side
    if abs(dx) >= MIN_TRAVEL and abs(dx) >= 2 * abs(dy):
        return "right" if dx > 0 else "left"
    if abs(dy) >= MIN_TRAVEL and abs(dy) >= 2 * abs(dx):
        return "down" if dy > 0 else "up"
    return None


def make_video_sample(clip: Clip, sampled: list[int], rng: np.random.Generator, kind: str | None = None) -> Sample | None:
    """One question about the frames `sampled` (indices into the clip) of `clip`, or None when none fits."""
    kind = kind or VIDEO_KINDS[int(rng.integers(len(VIDEO_KINDS)))]
    specs = clip.specs
    made = None
    if kind == "referring":
        first = clip.masks[sampled[0]]
        options = [k for k in range(len(specs)) if clip_name(clip, k) and first[k].sum() >= 4]
        if not options:
            return None
        k = options[int(rng.integers(len(options)))]
        name = clip_name(clip, k)
        reply = f"<module>segmenter</module> <instruction>segmentation: {name}</instruction> [SEG]"
        # task "referring": packing files its [SEG] like a still image's (clip batches train the text only)
        return Sample("referring", "video", f"segment {name}.", reply, answer=name, seg_targets=[k])
    if kind == "direction":
        options = []
        for k in range(len(specs)):
            name, word = clip_name(clip, k), motion_word(clip, k, sampled[0], sampled[-1])
            if name and word:
                options.append((f"which way did {name} move?", word))
        made = options[int(rng.integers(len(options)))] if options else None
    elif kind == "count":
        made = ("how many objects are in the video?", str(len(specs)))
    elif kind == "colour":
        options = [s for s in specs if sum(t.shape == s.shape for t in specs) == 1]
        if options:
            spec = options[int(rng.integers(len(options)))]
            made = (f"what colour is the {spec.shape}?", spec.colour)
    elif kind == "shape":
        options = [s for s in specs if sum(t.colour == s.colour for t in specs) == 1]
        if options:
            spec = options[int(rng.integers(len(options)))]
            made = (f"what shape is the {spec.colour} object?", spec.shape)
    else:
        raise ValueError(f"unknown video sample kind {kind!r}; kinds are {VIDEO_KINDS}")
    if made is None:
        return None
    request, answer = made
    return Sample("video_qa", kind, request, answer, answer=normalise_answer(answer))
