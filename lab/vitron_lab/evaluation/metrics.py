"""Scores as VITRON's tables report them, on numpy masks and answer strings (no model in here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vitron_ros.core.masks import intersection_union, iou


@dataclass
class SegmentationScore:
    """cIoU (sum of intersections / sum of unions) and gIoU (mean per-sample IoU) over a split."""

    intersection: int = 0
    union: int = 0
    ious: list[float] = field(default_factory=list)

    def add(self, pred: np.ndarray, target: np.ndarray) -> float:
        inter, union = intersection_union(pred, target)
        self.intersection += inter
        self.union += union
        score = 1.0 if union == 0 else inter / union
        self.ious.append(score)
        return score

    @property
    def ciou(self) -> float:
        return float("nan") if not self.ious else (1.0 if self.union == 0 else self.intersection / self.union)

    @property
    def giou(self) -> float:
        return float(np.mean(self.ious)) if self.ious else float("nan")

    def as_dict(self) -> dict:
        return {"ciou": round(self.ciou, 4), "giou": round(self.giou, 4), "n": len(self.ious)}


@dataclass
class Accuracy:
    correct: int = 0
    total: int = 0

    def add(self, ok: bool) -> None:
        self.correct += int(bool(ok))
        self.total += 1

    @property
    def rate(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    def as_dict(self) -> dict:
        return {"accuracy": round(self.rate, 4), "n": self.total}


def match_grounded(
    predicted: Sequence[tuple[str, np.ndarray]], truth: Sequence[tuple[str, np.ndarray]], iou_threshold: float = 0.5
) -> tuple[int, int]:
    """Grounded-conversation phrase/mask match: one-to-one pairs with the same phrase and mask IoU >= threshold.

    Pairs are taken best IoU first. Returns (phrases matched by text alone, pairs matched by text and mask);
    divide by max(len(predicted), len(truth)) for a rate that punishes both missing and invented phrases.
    """
    candidates = []
    for i, (phrase, mask) in enumerate(predicted):
        for j, (true_phrase, true_mask) in enumerate(truth):
            if _norm(phrase) == _norm(true_phrase):
                candidates.append((iou(mask, true_mask), i, j))
    used_pred, used_true, phrase_matches, mask_matches = set(), set(), 0, 0
    for score, i, j in sorted(candidates, reverse=True):
        if i in used_pred or j in used_true:
            continue
        used_pred.add(i)
        used_true.add(j)
        phrase_matches += 1
        mask_matches += int(score >= iou_threshold)
    return phrase_matches, mask_matches


def _norm(text: str) -> str:
    return " ".join(text.lower().split())
