"""DAVIS J and F against cases worked out by hand."""

import numpy as np
import pytest

from vitron_lab.evaluation.davis import (
    DavisSummary,
    boundary_f_measure,
    boundary_tolerance,
    disk,
    other_objects_covered,
    region_similarity,
    score_sequence,
    seg_to_boundary,
)


def _stripe(columns: int, rows: int = 10, size: int = 10) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[:rows, :columns] = True
    return mask


def test_region_similarity_is_iou_with_empty_pairs_scoring_one():
    pred, truth = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    pred[0:2, 0:2] = True  # 4 pixels
    truth[0:2, 0:3] = True  # 6 pixels, 4 shared
    assert region_similarity(pred, truth) == pytest.approx(4 / 6)
    assert region_similarity(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 1.0
    assert region_similarity(pred, np.zeros((4, 4), bool)) == 0.0


def test_boundary_of_a_left_stripe_is_its_last_column():
    boundary = seg_to_boundary(_stripe(5))
    expected = np.zeros((10, 10), bool)
    expected[:, 4] = True
    np.testing.assert_array_equal(boundary, expected)


def test_disk_and_tolerance_follow_skimage_and_davis():
    np.testing.assert_array_equal(disk(1), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    assert boundary_tolerance((10, 10)) == 1  # ceil(0.008 * 14.1)
    assert boundary_tolerance((480, 854)) == 8  # DAVIS 480p: ceil(0.008 * 979.6)
    assert boundary_tolerance((480, 854), tolerance=3) == 3


def test_boundary_f_measure_hand_cases():
    truth = _stripe(5)  # boundary: column 4
    assert boundary_f_measure(truth, truth) == 1.0
    assert boundary_f_measure(_stripe(6), truth, tolerance=1) == 1.0  # column 5: one pixel away, within tolerance
    assert boundary_f_measure(_stripe(7), truth, tolerance=1) == 0.0  # column 6: two pixels away
    assert boundary_f_measure(_stripe(7), truth, tolerance=2) == 1.0
    # Top-left 5x5 square: boundary = column 4 rows 0-4 plus row 4 columns 0-4 (9 pixels). Within the cross of
    # radius 1 of truth's column 4: the 5 column pixels and (4, 3) -> precision 6/9. Truth rows 0-5 of column 4
    # lie within 1 of the square's boundary -> recall 6/10. F = 2PR / (P + R).
    precision, recall = 6 / 9, 6 / 10
    assert boundary_f_measure(_stripe(5, rows=5), truth, tolerance=1) == pytest.approx(
        2 * precision * recall / (precision + recall)
    )
    empty = np.zeros((10, 10), bool)
    assert boundary_f_measure(empty, empty) == 1.0
    assert boundary_f_measure(empty, truth) == 0.0 and boundary_f_measure(truth, empty) == 0.0


def test_sequence_scores_leave_out_the_first_and_last_frames_as_davis_does():
    truth = [_stripe(5)] * 4
    wrong = np.zeros((10, 10), bool)
    # Frames 0 and 3 are wrong but not scored; frames 1 and 2 are perfect.
    score = score_sequence([wrong, truth[1], truth[2], wrong], truth)
    assert score.frames == 2 and score.j == 1.0 and score.f == 1.0 and score.j_and_f == 1.0
    all_frames = score_sequence([wrong, truth[1], truth[2], wrong], truth, skip_ends=False)
    assert all_frames.j == 0.5 and all_frames.frames == 4
    summary = DavisSummary.of([score, all_frames])
    assert summary.objects == 2 and summary.j_mean == pytest.approx(0.75)


def test_other_objects_covered_is_the_share_of_the_others_pixels_a_track_takes():
    left, right = _stripe(5), ~_stripe(5)
    nothing = np.zeros((10, 10), bool)
    track = [left, left | right, left, left]  # frame 1 covers everything; frames 0 and 3 are not scored
    others = [right, right, right, right]
    assert other_objects_covered(track, others) == [1.0, 0.0]
    half = right & _stripe(10, rows=5)  # the top half of the other object
    assert other_objects_covered([left | half] * 3, [right] * 3, skip_ends=False) == [0.5] * 3
    assert other_objects_covered([left] * 3, [nothing] * 3) == []  # no other object in view: no figure


def test_sequence_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least 3 frames"):
        score_sequence([_stripe(5)] * 2, [_stripe(5)] * 2)
    with pytest.raises(ValueError, match="2 predicted masks for 3"):
        score_sequence([_stripe(5)] * 2, [_stripe(5)] * 3)
    with pytest.raises(ValueError, match="one shape"):
        region_similarity(np.zeros((3, 3), bool), np.zeros((4, 4), bool))
