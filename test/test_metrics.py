"""Benchmark metrics on hand-made cases."""

import numpy as np

from vitron_lab.evaluation.metrics import Accuracy, SegmentationScore, match_grounded


def _mask(*cells, shape=(4, 4)):
    mask = np.zeros(shape, bool)
    for r, c in cells:
        mask[r, c] = True
    return mask


def test_ciou_weighs_pixels_giou_weighs_samples():
    score = SegmentationScore()
    big = np.ones((10, 10), bool)
    score.add(big, big)  # IoU 1 over 100 pixels
    score.add(_mask((0, 0), shape=(10, 10)), _mask((0, 1), shape=(10, 10)))  # IoU 0 over 2 pixels
    assert score.ciou == 100 / 102
    assert score.giou == 0.5
    assert score.as_dict() == {"ciou": round(100 / 102, 4), "giou": 0.5, "n": 2}


def test_accuracy():
    acc = Accuracy()
    for ok in (True, False, True, True):
        acc.add(ok)
    assert acc.rate == 0.75 and acc.as_dict()["n"] == 4


def test_grounded_match_needs_phrase_and_mask():
    a, b = _mask((0, 0), (0, 1)), _mask((3, 3), (3, 2))
    truth = [("red circle", a), ("blue square", b)]
    assert match_grounded([("red circle", a), ("blue square", b)], truth) == (2, 2)
    assert match_grounded([("red circle", b), ("blue square", a)], truth) == (2, 0)  # right words, wrong masks
    assert match_grounded([("green circle", a)], truth) == (0, 0)
    # a phrase said twice matches one object once
    assert match_grounded([("red circle", a), ("red circle", a)], truth) == (1, 1)
