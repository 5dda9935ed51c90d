"""Image-space validation and the square letterbox the vision tower sees.

LLaVA-1.5 pads every image to a square (centred, background colour) before resizing, and writes boxes normalised
to that padded square. `Letterbox` converts between original pixels (XYXY, continuous edges) and those
normalised coordinates, so boxes and region masks line up with what the model saw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import VitronInputError


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an HWC uint8 RGB image and return it contiguous."""
    if not isinstance(image, np.ndarray):
        raise VitronInputError(f"{name} must be a numpy array (H, W, 3) uint8 RGB, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise VitronInputError(f"{name} must have shape (H, W, 3) RGB, got {image.shape}")
    if image.dtype != np.uint8:
        raise VitronInputError(f"{name} must be uint8, got {image.dtype}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise VitronInputError(f"{name} is too small: {image.shape[1]}x{image.shape[0]} pixels")
    return np.ascontiguousarray(image)


def check_point(point: Sequence[float], width: int, height: int, name: str = "point") -> tuple[float, float]:
    """An (x, y) pixel point inside the image."""
    if len(point) != 2 or not all(isinstance(v, (int, float, np.number)) and math.isfinite(v) for v in point):
        raise VitronInputError(f"{name} must be two finite numbers (x, y), got {tuple(point)}")
    x, y = float(point[0]), float(point[1])
    if not (0 <= x <= width and 0 <= y <= height):
        raise VitronInputError(f"{name} ({x:g}, {y:g}) lies outside the {width}x{height} image")
    return x, y


def check_box(box: Sequence[float], width: int, height: int, name: str = "box") -> tuple[float, float, float, float]:
    """An XYXY pixel box with x1 < x2, y1 < y2, inside the image."""
    if len(box) != 4 or not all(isinstance(v, (int, float, np.number)) and math.isfinite(v) for v in box):
        raise VitronInputError(f"{name} must be four finite numbers (x1, y1, x2, y2), got {tuple(box)}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x1 < x2 and y1 < y2):
        raise VitronInputError(f"{name} ({x1:g}, {y1:g}, {x2:g}, {y2:g}) needs x1 < x2 and y1 < y2")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise VitronInputError(f"{name} ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the {width}x{height} image")
    return x1, y1, x2, y2


@dataclass(frozen=True)
class Letterbox:
    """Centred square padding of a (height, width) image: side = max(H, W)."""

    height: int
    width: int

    @property
    def side(self) -> int:
        return max(self.height, self.width)

    @property
    def offset_xy(self) -> tuple[int, int]:
        """Where the original image's top-left corner sits in the square (LLaVA's expand2square)."""
        return (self.side - self.width) // 2, (self.side - self.height) // 2

    def pad_image(self, image: np.ndarray, fill: Sequence[int]) -> np.ndarray:
        ox, oy = self.offset_xy
        square = np.empty((self.side, self.side, image.shape[2]), dtype=image.dtype)
        square[:] = np.asarray(fill, dtype=image.dtype)
        square[oy : oy + self.height, ox : ox + self.width] = image
        return square

    def pad_mask(self, mask: np.ndarray) -> np.ndarray:
        ox, oy = self.offset_xy
        square = np.zeros((self.side, self.side), dtype=bool)
        square[oy : oy + self.height, ox : ox + self.width] = mask
        return square

    def box_to_normalized(self, box_xyxy: Sequence[float]) -> tuple[float, float, float, float]:
        """Original-pixel XYXY -> XYXY in [0, 1] of the padded square."""
        ox, oy = self.offset_xy
        x1, y1, x2, y2 = box_xyxy
        s = float(self.side)
        return ((x1 + ox) / s, (y1 + oy) / s, (x2 + ox) / s, (y2 + oy) / s)

    def box_from_normalized(self, box_norm: Sequence[float]) -> tuple[float, float, float, float]:
        """XYXY in [0, 1] of the padded square -> original-pixel XYXY (may fall in the padding)."""
        ox, oy = self.offset_xy
        x1, y1, x2, y2 = box_norm
        s = float(self.side)
        return (x1 * s - ox, y1 * s - oy, x2 * s - ox, y2 * s - oy)
