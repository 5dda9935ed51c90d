"""Clips: checking a sequence of frames and choosing which of them the LLM's video encoder sees."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import VitronInputError
from .geometry import check_image


@dataclass(frozen=True)
class ClipSampling:
    """Which frames of a clip the video encoder sees (the tracker always follows every frame)."""

    frames: int = 8  # frames sampled uniformly over the clip, first and last included; Video-LLaVA uses 8
    max_clip_frames: int = 600  # longer clips are refused rather than silently truncated

    def indices(self, total: int) -> list[int]:
        if self.frames < 1:
            raise VitronInputError(f"clip sampling needs at least 1 frame, got {self.frames}")
        if total <= self.frames:
            return list(range(total))
        return sorted({round(float(i)) for i in np.linspace(0, total - 1, self.frames)})


def check_clip(frames: Sequence[np.ndarray], sampling: ClipSampling | None = None) -> list[np.ndarray]:
    """Every frame (H, W, 3) uint8 RGB and all of one size; returns them contiguous."""
    sampling = sampling or ClipSampling()
    if isinstance(frames, np.ndarray) and frames.ndim == 4:
        frames = list(frames)
    if not isinstance(frames, Sequence) or len(frames) == 0:
        raise VitronInputError("a clip needs at least one frame")
    if len(frames) > sampling.max_clip_frames:
        raise VitronInputError(
            f"clip has {len(frames)} frames, more than max_clip_frames={sampling.max_clip_frames}; send a shorter clip"
        )
    checked = [check_image(frame, f"clip frame {i}") for i, frame in enumerate(frames)]
    height, width = checked[0].shape[:2]
    for i, frame in enumerate(checked):
        if frame.shape[:2] != (height, width):
            raise VitronInputError(
                f"clip frame {i} is {frame.shape[1]}x{frame.shape[0]}, frame 0 is {width}x{height}; frames must share a size"
            )
    return checked
