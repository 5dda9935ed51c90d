"""User sketches (point, box, scribble, mask) and their validation against an image."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import VitronInputError
from .geometry import check_box, check_point
from .masks import box_to_mask


@dataclass(frozen=True)
class Sketch:
    """What a user drew on the image. Pixels, XY / XYXY."""

    kind: str  # "point", "box", "scribble" or "mask"
    points_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # point: 1; scribble: >= 2
    box_xyxy: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None  # (H, W) bool

    @classmethod
    def point(cls, x: float, y: float) -> Sketch:
        return cls("point", points_xy=np.asarray([[x, y]], np.float32))

    @classmethod
    def box(cls, x1: float, y1: float, x2: float, y2: float) -> Sketch:
        return cls("box", box_xyxy=(float(x1), float(y1), float(x2), float(y2)))

    @classmethod
    def scribble(cls, points_xy) -> Sketch:
        return cls("scribble", points_xy=np.asarray(points_xy, np.float32).reshape(-1, 2))

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> Sketch:
        return cls("mask", mask=np.asarray(mask, dtype=bool))

    def validate(self, height: int, width: int, name: str) -> None:
        """Raise VitronInputError naming this sketch if it does not fit a height x width image."""
        if self.kind == "point":
            if len(self.points_xy) != 1:
                raise VitronInputError(f"{name}: a point sketch has exactly one point, got {len(self.points_xy)}")
            check_point(tuple(self.points_xy[0]), width, height, name)
        elif self.kind == "box":
            check_box(self.box_xyxy or (), width, height, name)
        elif self.kind == "scribble":
            if len(self.points_xy) < 2:
                raise VitronInputError(f"{name}: a scribble needs at least two points, got {len(self.points_xy)}")
            for i, p in enumerate(self.points_xy):
                check_point(tuple(p), width, height, f"{name} point {i}")
        elif self.kind == "mask":
            if self.mask is None or self.mask.shape != (height, width):
                shape = None if self.mask is None else self.mask.shape
                raise VitronInputError(f"{name}: mask must have the image's shape {(height, width)}, got {shape}")
            if not self.mask.any():
                raise VitronInputError(f"{name}: mask is empty")
        else:
            raise VitronInputError(f"{name}: unknown sketch kind {self.kind!r}; use point, box, scribble or mask")

    def drawn_mask(self, height: int, width: int) -> np.ndarray:
        """The sketch's own shape as a mask: the region when the segmenter finds nothing there."""
        import cv2

        canvas = np.zeros((height, width), np.uint8)
        radius = max(2, round(0.02 * max(height, width)))
        if self.kind == "mask":
            return self.mask.copy()
        if self.kind == "box":
            return box_to_mask(self.box_xyxy, height, width)
        if self.kind == "point":
            x, y = self.points_xy[0]
            cv2.circle(canvas, (int(x), int(y)), radius, 1, thickness=-1)
        else:
            cv2.polylines(canvas, [self.points_xy.round().astype(np.int32)], False, 1, thickness=radius)
        return canvas.astype(bool)
