"""The small interface every specialist (segmenter, tracker, generator, editor...) implements."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class Frame:
    """One image and the per-image work its specialists share within a query.

    A query calls the segmenter twice (user sketches before the LLM, the LLM's invocations after); keeping SAM's
    image embedding here encodes the image once. A new Frame per image means nothing stale can be reused.
    """

    image: np.ndarray  # (H, W, 3) uint8 RGB; in a clip query, the key frame that masks and boxes refer to
    cache: dict = field(default_factory=dict)
    clip: tuple[np.ndarray, ...] = ()  # a clip query's frames from the key frame on, for the tracker to propagate through
    # called as (step, steps) after every step of long specialist work (denoising); an exception it raises
    # (QueryCancelled) abandons the work
    on_step: Callable[[int, int], None] | None = None


@dataclass(frozen=True)
class SpecialistCall:
    """One request to a specialist, with both halves of VITRON's hybrid message.

    Coordinates are original-image pixels. `embedding` is the continuous signal embedding (already projected into
    the specialist's prompt space, shape (D,) float32); the text half is `task` + `instruction`.
    """

    task: str
    instruction: str = ""
    points_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # (N, 2) float, XY
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))  # (N,) 1 = fg, 0 = bg
    box_xyxy: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None  # (H, W) bool prompt mask
    embedding: np.ndarray | None = None  # (D,) float32 signal embedding
    multimask: bool = True
    # (hidden,) float32: the LLM's hidden state at this call's [SEG], unprojected, for specialists that project it
    # into their own conditioning space with their own trained head (the generator and editor)
    signal: np.ndarray | None = None


@dataclass(frozen=True)
class SpecialistOutput:
    """Masks for one call: candidates best first, or for tracking one mask per clip frame, in frame order.

    An image specialist returns `images` (K, H, W, 3) uint8 RGB, each with `masks[k]` the region it changed (every
    pixel outside it equals the input image's) and `labels[k]` what it shows. A video specialist returns one clip:
    `images` (T, H, W, 3) its frames, `masks` (T, H, W) all True, and `fps` the rate it plays at.
    """

    masks: np.ndarray  # (K, H, W) bool
    scores: np.ndarray  # (K,) float32, the specialist's own quality estimate
    labels: tuple[str, ...] = ()  # optional per-mask label (e.g. "object 3" in everything mode)
    images: np.ndarray | None = None  # (K, H, W, 3) uint8 RGB: edited or generated images (a clip's frames)
    fps: float | None = None  # a clip's frame rate


class Specialist(Protocol):
    name: str  # registry key the LLM names in <module>...</module>
    tasks: frozenset[str]  # task words accepted before ':' in <instruction>

    def run(self, frame: Frame, calls: Sequence[SpecialistCall]) -> list[SpecialistOutput | Exception]:
        """Serve every call on one frame (per-image work done once); a failed call yields its exception."""
        ...
