"""ShapesWorld clips of shapes moving the way a caption says, and reading that motion back from frames.

    clip = motion_clip(seed)            # 1-2 shapes, each moving left / right / up / down at its own speed
    clip.caption                        # "a red circle moving left and a blue square moving up"
    read_motion(frames, "red", "circle") -> ObjectMotion(present=..., direction="left", ...)

The video generator is trained on these clips (`vitron-lab train --stage video_generator`) and scored by reading its
clips with `read_motion` (`vitron-lab eval --suite video-gen`): colour segmentation, the shape read from the mask, the
centroid's path over the frames. Nothing here knows the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .edits import colour_mask, read_shape
from .world import BACKGROUNDS, ShapeSpec, _sample_spec, compose, render_background

DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
MIN_TRAVEL = 0.06  # of the side: how far a moving object must go over a clip for its direction to count


@dataclass
class MotionClip:
    frames: list[np.ndarray]  # (H, W, 3) uint8 RGB each
    specs: list[ShapeSpec]  # each object in frame 0
    directions: list[str]
    caption: str
    seed: int
    tracks: list[list[tuple[float, float]]] = field(default_factory=list)  # per frame, each object's centre (px)

    def request(self, index: int = 0) -> str:
        """'the red circle moves left': the image-to-video request for object `index`, starting from frame 0."""
        spec = self.specs[index]
        return f"the {spec.colour} {spec.shape} moves {self.directions[index]}"


def _phrase(spec: ShapeSpec, direction: str) -> str:
    return f"a {spec.colour} {spec.shape} moving {direction}"


def motion_clip(seed: int, frames: int = 8, size: int = 64, max_objects: int = 2, travel=(0.2, 0.4)) -> MotionClip:
    """1 to `max_objects` upright shapes of different colours, each moving in a straight line, in one of four directions, by
    `travel` (a fraction of the side) over the clip; placed so the whole path stays inside the frame."""
    rng, background_rng = np.random.default_rng([seed, 20]), np.random.default_rng([seed, 21])
    background = render_background(str(rng.choice(BACKGROUNDS)), size, background_rng)
    count = int(rng.integers(1, max_objects + 1))
    specs, directions, paths = [], [], []
    for _ in range(count):
        while True:
            spec = _sample_spec(rng)
            if spec.colour not in {s.colour for s in specs}:
                break
        direction = str(rng.choice(list(DIRECTIONS)))
        distance = float(rng.uniform(*travel))
        dx, dy = (distance * d for d in DIRECTIONS[direction])
        low, high = spec.extent / 2 + 0.02, 1 - spec.extent / 2 - 0.02
        # the start, so that start + (dx, dy) stays within [low, high] on both axes
        x0 = float(rng.uniform(low - min(dx, 0), high - max(dx, 0))) if high - low > abs(dx) else 0.5 - dx / 2
        y0 = float(rng.uniform(low - min(dy, 0), high - max(dy, 0))) if high - low > abs(dy) else 0.5 - dy / 2
        specs.append(ShapeSpec(spec.shape, spec.colour, x0, y0, spec.extent, 0.0))  # upright: read_shape reads it
        directions.append(direction)
        paths.append((dx, dy))
    clip = MotionClip([], specs, directions, " and ".join(_phrase(s, d) for s, d in zip(specs, directions)), seed)
    for t in range(frames):
        f = t / max(frames - 1, 1)
        current = [ShapeSpec(s.shape, s.colour, s.cx + f * dx, s.cy + f * dy, s.extent, s.angle)
                   for s, (dx, dy) in zip(specs, paths)]
        image, _, _ = compose(current, background)
        clip.frames.append(image)
        clip.tracks.append([(s.cx * size, s.cy * size) for s in current])
    return clip


@dataclass(frozen=True)
class ObjectMotion:
    present: float  # share of frames in which an object of that colour reads as that shape
    direction: str | None  # the direction its centroid travelled, or None (not found / it did not move enough)
    travel: float  # how far it went from the first to the last frame it was found in, fraction of the side
    start_xy: tuple[float, float] | None  # its centroid in the first frame it was found in (px)


def read_motion(frames, colour: str, shape: str) -> ObjectMotion:
    """Where the `colour` `shape` is in each frame, and which way it went: read from the pixels alone."""
    centres, found = [], 0
    size = frames[0].shape[1]
    for image in frames:
        mask = colour_mask(image, colour)
        if mask.sum() < 6 or read_shape(mask) != shape:
            centres.append(None)
            continue
        found += 1
        ys, xs = np.nonzero(mask)
        centres.append((float(xs.mean()), float(ys.mean())))
    seen = [c for c in centres if c is not None]
    if len(seen) < 2:
        return ObjectMotion(found / len(frames), None, 0.0, seen[0] if seen else None)
    (x0, y0), (x1, y1) = seen[0], seen[-1]
    dx, dy = (x1 - x0) / size, (y1 - y0) / size
    travel = float(np.hypot(dx, dy))
    direction = None
    if travel >= MIN_TRAVEL:
        if abs(dx) >= abs(dy):
            direction = "right" if dx > 0 else "left"
        else:
            direction = "down" if dy > 0 else "up"
    return ObjectMotion(found / len(frames), direction, travel, seen[0])
