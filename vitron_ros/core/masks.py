"""Mask utilities: COCO RLE, boxes, IoU and the referring-segmentation metrics.

Masks are `bool` arrays of shape (H, W). Boxes are XYXY in continuous pixel coordinates: pixel (row r, col c)
covers [c, c+1) x [r, r+1), so a mask's box is (min col, min row, max col + 1, max row + 1).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def _check_mask(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO run lengths: column-major order, alternating runs starting with zeros."""
    flat = _check_mask(mask).ravel(order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(edges).tolist()
    if flat[0]:
        counts.insert(0, 0)  # COCO runs always start with a (possibly empty) run of zeros
    return counts


def _counts_to_string(counts: list[int]) -> str:
    # pycocotools' rleToString: each count (delta-coded against the count two back) as 5-bit groups,
    # 0x20 = "more groups follow", 0x10 = sign bit of the last group, offset by 48 into printable ASCII.
    out = bytearray()
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(c + 48)
    return out.decode("ascii")


def _string_to_counts(text: str) -> list[int]:
    counts: list[int] = []
    data = text.encode("ascii")
    p = 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p >= len(data):
                raise ValueError("truncated RLE counts string")
            c = data[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_encode(mask: np.ndarray) -> dict:
    """COCO compressed RLE {"size": [H, W], "counts": str}, identical to pycocotools.mask.encode."""
    mask = _check_mask(mask)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": _counts_to_string(rle_counts(mask))}


def rle_decode(rle: dict) -> np.ndarray:
    """Inverse of `rle_encode`; accepts compressed (str/bytes) or uncompressed (list) counts."""
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"RLE must be a mapping with 'size' [H, W] and 'counts': {exc}") from None
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = _string_to_counts(counts)
    if any(c < 0 for c in counts) or sum(counts) != height * width:
        raise ValueError(f"RLE counts sum to {sum(counts)} but size {height}x{width} needs {height * width}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((height, width), order="F")


def mask_to_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight XYXY box (continuous pixel edges); (0, 0, 0, 0) for an empty mask."""
    mask = _check_mask(mask)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def box_to_mask(box_xyxy: Iterable[float], height: int, width: int) -> np.ndarray:
    """Pixels whose centres fall inside the XYXY box."""
    x1, y1, x2, y2 = box_xyxy
    cols = np.arange(width) + 0.5
    rows = np.arange(height) + 0.5
    return ((rows >= y1) & (rows < y2))[:, None] & ((cols >= x1) & (cols < x2))[None, :]


def intersection_union(pred: np.ndarray, target: np.ndarray) -> tuple[int, int]:
    pred, target = _check_mask(pred, "pred"), _check_mask(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} differs from target shape {target.shape}")
    return int(np.logical_and(pred, target).sum()), int(np.logical_or(pred, target).sum())


def iou(pred: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union; two empty masks agree perfectly (1.0)."""
    inter, union = intersection_union(pred, target)
    return 1.0 if union == 0 else inter / union


def ciou(preds: Iterable[np.ndarray], targets: Iterable[np.ndarray]) -> float:
    """Cumulative IoU over a split: sum of intersections / sum of unions (large objects weigh more)."""
    total_inter = total_union = 0
    for pred, target in zip(preds, targets, strict=True):
        inter, union = intersection_union(pred, target)
        total_inter += inter
        total_union += union
    return 1.0 if total_union == 0 else total_inter / total_union


def giou(preds: Iterable[np.ndarray], targets: Iterable[np.ndarray]) -> float:
    """Generalised IoU as referring segmentation reports it: the mean of per-sample IoUs."""
    scores = [iou(p, t) for p, t in zip(preds, targets, strict=True)]
    if not scores:
        raise ValueError("gIoU needs at least one (pred, target) pair")
    return float(np.mean(scores))
