import numpy as np
import pycocotools.mask as coco
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vitron_ros.core.masks import (
    box_to_mask,
    ciou,
    giou,
    iou,
    mask_to_box,
    rle_decode,
    rle_encode,
)


@settings(max_examples=300, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_rle_is_byte_identical_to_pycocotools(mask):
    ours = rle_encode(mask)
    theirs = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert ours["counts"].encode() == theirs["counts"]
    assert ours["size"] == list(theirs["size"])
    assert np.array_equal(rle_decode(ours), mask)
    assert np.array_equal(rle_decode(theirs), coco.decode(theirs).astype(bool))


def test_rle_on_large_random_masks_with_long_runs():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = np.zeros((480, 640), bool)
        y, x = rng.integers(0, 400), rng.integers(0, 600)
        mask[y : y + rng.integers(1, 300), x : x + rng.integers(1, 300)] = True
        mask ^= rng.random(mask.shape) < 0.001
        assert rle_encode(mask)["counts"].encode() == coco.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]


def test_rle_decode_rejects_inconsistent_counts():
    with pytest.raises(ValueError, match="counts sum to 3 but size 2x2 needs 4"):
        rle_decode({"size": [2, 2], "counts": [1, 2]})


def test_box_of_mask_uses_continuous_edges():
    mask = np.zeros((10, 20), bool)
    mask[2:5, 3:11] = True  # rows 2-4, cols 3-10
    assert mask_to_box(mask) == (3.0, 2.0, 11.0, 5.0)
    assert np.array_equal(box_to_mask(mask_to_box(mask), 10, 20), mask)
    assert mask_to_box(np.zeros((4, 4), bool)) == (0.0, 0.0, 0.0, 0.0)


def test_iou_ciou_giou_on_hand_made_cases():
    a = np.zeros((10, 10), bool)
    a[:, :4] = True  # 40 px
    b = np.zeros((10, 10), bool)
    b[:, 2:6] = True  # 40 px, overlap 20
    assert iou(a, b) == pytest.approx(20 / 60)
    small_pred = np.zeros((10, 10), bool)
    small_pred[0, 0] = True
    small_target = np.zeros((10, 10), bool)
    small_target[0, :2] = True  # iou 1/2
    # cIoU pools pixels (the big pair dominates); gIoU averages per-sample IoU.
    assert ciou([a, small_pred], [b, small_target]) == pytest.approx((20 + 1) / (60 + 2))
    assert giou([a, small_pred], [b, small_target]) == pytest.approx((20 / 60 + 0.5) / 2)
    assert iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0
    with pytest.raises(ValueError, match="differs from target shape"):
        iou(a, np.zeros((5, 5), bool))
