"""DAVIS video object segmentation measures: J (region IoU) and F (boundary F-measure), as DAVIS 2017 scores them.

F follows the davis2017-evaluation code: one-pixel boundaries (`seg_to_boundary`), each side's boundary dilated by
a disk of radius ceil(0.008 * image diagonal), precision = predicted boundary pixels within that tolerance of the
true boundary, recall the other way round. Both measures score an empty prediction of an empty truth as 1, and
a sequence is scored without its first frame (given as the prompt) and last frame, as DAVIS does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DAVIS_BOUNDARY_TOLERANCE = 0.008  # fraction of the image diagonal


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape or pred.ndim != 2:
        raise ValueError(f"masks must be two (H, W) arrays of one shape, got {pred.shape} and {truth.shape}")
    return pred, truth


def region_similarity(pred: np.ndarray, truth: np.ndarray) -> float:
    """J: intersection over union of two (H, W) bool masks; 1.0 when both are empty."""
    pred, truth = _pair(pred, truth)
    union = np.count_nonzero(pred | truth)
    return 1.0 if union == 0 else np.count_nonzero(pred & truth) / union


def seg_to_boundary(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary of a (H, W) bool mask: pixels that differ from their right, lower or lower-right neighbour."""
    seg = np.asarray(mask, dtype=bool)
    east, south, south_east = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    boundary = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    boundary[-1, :] = seg[-1, :] ^ east[-1, :]
    boundary[:, -1] = seg[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


def disk(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) uint8 disk: offsets with x^2 + y^2 <= r^2 (skimage.morphology.disk)."""
    offsets = np.arange(-radius, radius + 1)
    return ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius * radius).astype(np.uint8)


def boundary_tolerance(shape: tuple[int, int], tolerance: float = DAVIS_BOUNDARY_TOLERANCE) -> int:
    """Pixels of slack: `tolerance` itself when >= 1, else ceil(tolerance * image diagonal)."""
    return int(tolerance) if tolerance >= 1 else int(math.ceil(tolerance * math.hypot(*shape)))


def boundary_f_measure(pred: np.ndarray, truth: np.ndarray, tolerance: float = DAVIS_BOUNDARY_TOLERANCE) -> float:
    """F: harmonic mean of boundary precision and recall within the tolerance; 1.0 when both masks are empty."""
    import cv2

    pred, truth = _pair(pred, truth)
    kernel = disk(boundary_tolerance(pred.shape, tolerance))
    pred_boundary, truth_boundary = seg_to_boundary(pred), seg_to_boundary(truth)
    pred_near = cv2.dilate(pred_boundary.astype(np.uint8), kernel).astype(bool)
    truth_near = cv2.dilate(truth_boundary.astype(np.uint8), kernel).astype(bool)
    n_pred, n_truth = np.count_nonzero(pred_boundary), np.count_nonzero(truth_boundary)
    if n_pred == 0 and n_truth == 0:
        return 1.0
    if n_pred == 0 or n_truth == 0:
        return 0.0  # DAVIS: precision 1 / recall 0 (or the reverse), whose harmonic mean is 0
    precision = np.count_nonzero(pred_boundary & truth_near) / n_pred
    recall = np.count_nonzero(truth_boundary & pred_near) / n_truth
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class SequenceScore:
    """Mean J and F of one object over the scored frames of one sequence."""

    j: float
    f: float
    frames: int

    @property
    def j_and_f(self) -> float:
        return (self.j + self.f) / 2


def score_sequence(preds: Sequence[np.ndarray], truths: Sequence[np.ndarray], skip_ends: bool = True) -> SequenceScore:
    """J and F of one object's mask sequence, frame by frame; DAVIS leaves out the first and last frames."""
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} predicted masks for {len(truths)} ground-truth frames")
    frames = list(zip(preds, truths, strict=True))
    if skip_ends:
        if len(frames) < 3:
            raise ValueError(f"a DAVIS sequence needs at least 3 frames to leave out the first and last, got {len(frames)}")
        frames = frames[1:-1]
    j = [region_similarity(p, t) for p, t in frames]
    f = [boundary_f_measure(p, t) for p, t in frames]
    return SequenceScore(j=float(np.mean(j)), f=float(np.mean(f)), frames=len(frames))


def other_objects_covered(preds: Sequence[np.ndarray], others: Sequence[np.ndarray], skip_ends: bool = True) -> list[float]:
    """Per frame, the share of the other objects' true pixels that one object's track covers.

    `others[t]` is the union of every other object's true mask in frame t; frames where no other object is visible
    give no figure. A tracker that segments every shape in view scores near 1, one that follows its object near 0.
    """
    frames = list(zip(preds, others, strict=True))
    if skip_ends:
        frames = frames[1:-1]
    return [float((p & o).sum() / o.sum()) for p, o in frames if o.any()]


@dataclass(frozen=True)
class DavisSummary:
    """Means over every (sequence, object) pair, as the DAVIS benchmark reports them."""

    j_mean: float
    f_mean: float
    objects: int

    @property
    def j_and_f(self) -> float:
        return (self.j_mean + self.f_mean) / 2

    @classmethod
    def of(cls, scores: Sequence[SequenceScore]) -> DavisSummary:
        if not scores:
            return cls(0.0, 0.0, 0)
        return cls(float(np.mean([s.j for s in scores])), float(np.mean([s.f for s in scores])), len(scores))
