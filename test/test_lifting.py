"""Masks lifted to 3D (core/lifting.py): hand-computed back-projections, holes, flying pixels, encodings, frames,
and the RGB-D ShapesWorld and its 3d suite."""

import numpy as np
import pytest

from vitron_ros.core.errors import VitronInputError
from vitron_ros.core.lifting import (
    DepthImage,
    LiftingConfig,
    No3D,
    PinholeCamera,
    RigidTransform,
    box_centre_lift,
    lift_mask,
    matrix_to_quaternion,
    quaternion_to_matrix,
    transform_object,
)

CAMERA = PinholeCamera(fx=500.0, fy=400.0, cx=50.0, cy=40.0, width=100, height=80)


def plane(z: float = 2.0, shape=(80, 100)) -> np.ndarray:
    return np.full(shape, z, np.float32)


def square_mask(rows=(10, 30), cols=(60, 80), shape=(80, 100)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def test_plane_at_known_depth_back_projects_by_hand():
    found = lift_mask(square_mask(), DepthImage.from_array(plane(2.0), "32FC1"), CAMERA)
    assert found.ok
    # eroded by 2 px: columns 62..77, rows 12..27; centroid at their mean pixel, back-projected at z = 2
    assert np.allclose(found.centroid, [(69.5 - 50) / 500 * 2, (19.5 - 40) / 400 * 2, 2.0], atol=1e-6)
    # the box spans pixel centres 60..79 and 10..29 once erosion is given back: 19 px at 2 m
    assert np.allclose(found.box_size[:2], [19 / 500 * 2, 19 / 400 * 2], atol=1e-6)
    assert found.box_size[2] == pytest.approx(0.0, abs=1e-6)
    assert found.inliers == found.valid_pixels == 16 * 16 and found.mask_pixels == 400
    assert np.allclose(found.covariance[2], 0.0) and found.covariance[0, 0] > 0
    assert found.occluded_share == 0.0
    assert np.allclose(np.sort(found.oriented_size)[1:], np.sort(found.box_size)[1:], atol=1e-6)


def test_millimetres_and_metres_give_the_same_answer():
    metres = plane(1.234)
    millimetres = np.round(metres * 1000).astype(np.uint16)
    a = lift_mask(square_mask(), DepthImage.from_array(metres, "32FC1"), CAMERA)
    b = lift_mask(square_mask(), DepthImage.from_array(millimetres, "16UC1"), CAMERA)
    assert np.allclose(a.centroid, b.centroid, atol=1e-6) and np.allclose(a.box_size, b.box_size, atol=1e-6)
    assert DepthImage.from_array(millimetres, "mono16").scale == 0.001


def test_holes_are_skipped_and_too_few_give_no_3d_with_the_reason():
    rng = np.random.default_rng(0)
    depth = plane(2.0)
    holes = rng.random(depth.shape) < 0.4
    depth[holes] = np.nan
    depth[rng.random(depth.shape) < 0.1] = 0.0
    found = lift_mask(square_mask(), DepthImage.from_array(depth, "32FC1"), CAMERA)
    assert found.ok and found.centroid[2] == pytest.approx(2.0)
    assert found.valid_pixels < 16 * 16
    empty = plane(2.0)
    empty[square_mask()] = 0.0
    empty[15, 65] = 2.0  # one reading: not a position
    none = lift_mask(square_mask(), DepthImage.from_array(empty, "32FC1"), CAMERA)
    assert isinstance(none, No3D) and not none.ok
    assert "1 valid depth pixels" in none.reason and none.mask_pixels == 400
    assert "empty" in lift_mask(np.zeros((80, 100), bool), DepthImage.from_array(plane(), "32FC1"), CAMERA).reason


def test_flying_pixels_and_background_in_the_mask_are_rejected():
    """A mask that bleeds onto a wall 2 m behind, with flying pixels between the two on the edges."""
    rng = np.random.default_rng(1)
    depth = plane(3.0)
    obj = square_mask()
    depth[obj] = 1.0
    mask = square_mask(rows=(6, 34), cols=(56, 84))  # 4 px of wall all round
    edge = mask & ~obj
    depth[edge] = np.where(rng.random(edge.sum()) < 0.5, rng.uniform(1.0, 3.0, edge.sum()), 3.0)
    found = lift_mask(mask, DepthImage.from_array(depth, "32FC1"), CAMERA)
    truth = lift_mask(obj, DepthImage.from_array(np.where(obj, 1.0, 3.0).astype(np.float32), "32FC1"), CAMERA)
    assert np.linalg.norm(found.centroid - truth.centroid) < 0.005
    assert found.inliers < found.valid_pixels  # the wall and the flying pixels went
    baseline = box_centre_lift(mask, DepthImage.from_array(depth, "32FC1"), CAMERA)
    assert np.linalg.norm(baseline.centroid - truth.centroid) > 0.05  # the box-centre method is pulled off


def test_a_nearer_surface_on_the_outline_is_reported_as_occlusion():
    depth = plane(2.0)
    depth[:, 70:] = 1.0  # a nearer object covers the square's right half
    visible = square_mask(cols=(60, 70))
    found = lift_mask(visible, DepthImage.from_array(depth, "32FC1"), CAMERA)
    assert found.ok and 0.2 < found.occluded_share < 0.5


def test_misaligned_or_mismatched_inputs_say_what_is_wrong():
    depth = DepthImage.from_array(plane(shape=(40, 50)), "32FC1")
    assert "not aligned" in lift_mask(square_mask(), depth, CAMERA).reason
    other = PinholeCamera(500, 400, 50, 40, width=200, height=160)
    assert "camera_info is for 200x160" in lift_mask(square_mask(), DepthImage.from_array(plane(), "32FC1"), other).reason
    with pytest.raises(VitronInputError, match="REP 118"):
        DepthImage.from_array(plane(), "rgb8")
    with pytest.raises(VitronInputError, match="uint16"):
        DepthImage.from_array(plane(), "16UC1")
    with pytest.raises(VitronInputError, match="uncalibrated"):
        PinholeCamera(0, 0, 0, 0)
    with pytest.raises(VitronInputError, match="fx,fy,cx,cy"):
        PinholeCamera.parse("500,400")
    with pytest.raises(VitronInputError, match="not supported"):
        PinholeCamera(1, 1, 0, 0, distortion_model="kannala")
    with pytest.raises(VitronInputError, match="plumb_bob distortion has 3 coefficients"):
        PinholeCamera(1, 1, 0, 0, distortion_model="plumb_bob", distortion=(0.1, 0.0, 0.0))
    with pytest.raises(VitronInputError, match="not all finite"):
        PinholeCamera(1, 1, 0, 0, distortion_model="plumb_bob", distortion=(np.nan, 0, 0, 0, 0))
    with pytest.raises(VitronInputError, match="min_pixels"):
        LiftingConfig(min_pixels=1)
    with pytest.raises(VitronInputError, match="bool"):
        lift_mask(square_mask().astype(np.uint8), DepthImage.from_array(plane(), "32FC1"), CAMERA)


def test_distortion_is_undone_and_zero_distortion_changes_nothing():
    import cv2

    zero = PinholeCamera(500, 400, 50, 40, distortion_model="plumb_bob", distortion=(0.0,) * 5)
    us, vs = np.array([0.0, 70.0]), np.array([5.0, 60.0])
    assert np.allclose(zero.rays(us, vs), CAMERA.rays(us, vs))
    bent = PinholeCamera(500, 400, 50, 40, distortion_model="plumb_bob", distortion=(-0.3, 0.1, 0.001, 0.0, 0.0))
    k = np.array([[500, 0, 50], [0, 400, 40], [0, 0, 1]], np.float64)
    expected = cv2.undistortPoints(np.array([[[0.0, 5.0]], [[70.0, 60.0]]]), k, np.array(bent.distortion))
    assert np.allclose(np.stack(bent.rays(us, vs), -1), expected[:, 0], atol=1e-9)
    assert PinholeCamera.from_k([500, 0, 50, 0, 400, 40, 0, 0, 1]) == PinholeCamera(500, 400, 50, 40)


def test_results_in_another_frame_and_quaternions():
    turn = RigidTransform.from_quaternion((0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)), (1.0, 2.0, 3.0), "base_link")
    optical = lift_mask(square_mask(), DepthImage.from_array(plane(), "32FC1"), CAMERA)
    moved = transform_object(optical, turn)
    assert moved.frame_id == "base_link"
    assert np.allclose(moved.centroid, turn.rotation @ optical.centroid + [1, 2, 3], atol=1e-9)
    # a quarter turn about z swaps the box's x and y sizes exactly; the spread turns with it
    assert np.allclose(moved.box_size, optical.box_size[[1, 0, 2]], atol=1e-9)
    assert np.allclose(moved.covariance, turn.rotation @ optical.covariance @ turn.rotation.T)
    assert np.allclose(moved.oriented_size, optical.oriented_size)
    assert np.allclose(turn.rotation @ [1, 0, 0], [0, 1, 0], atol=1e-12)  # 90 degrees about z
    rng = np.random.default_rng(2)
    for _ in range(20):
        q = rng.normal(size=4)
        q = q / np.linalg.norm(q) * (1 if q[3] >= 0 else -1)
        assert np.allclose(matrix_to_quaternion(quaternion_to_matrix(q)), q, atol=1e-9)
    assert np.isclose(np.linalg.det(optical.oriented_rotation), 1.0)


def test_depth_world_truth_is_exact_and_the_suite_reports_both_methods():
    from vitron_lab.evaluation.lifting_suite import evaluate_3d, format_3d_report
    from vitron_lab.shapes.depth_world import SensorModel, generate_depth_scene

    exact = generate_depth_scene(11, sensor=SensorModel.exact(), min_objects=3, max_objects=3)
    sensed = generate_depth_scene(11, min_objects=3, max_objects=3)
    assert np.array_equal(exact.image, sensed.image) and len(exact.objects) == 3
    assert 0.005 < (sensed.depth_mm == 0).mean() < 0.2  # holes at a realistic rate
    depth = DepthImage.from_array(exact.depth_mm, "16UC1")
    for obj in exact.objects:
        if not obj.occluded:  # a whole visible surface, exact depth: the truth to a millimetre
            found = lift_mask(obj.mask, depth, exact.camera, LiftingConfig(erode_px=0))
            assert np.linalg.norm(found.centroid - obj.true_centroid) < 0.001
    report = evaluate_3d(scenes=3)
    table = format_3d_report(report)
    for key in ("sensor/ours/all", "sensor/box_centre/all", "sensor_bleed/ours/occluded"):
        assert key in report["results"]
    assert report["results"]["sensor/ours/all"]["median_m"] < report["results"]["sensor/box_centre/all"]["median_m"]
    assert "box_centre" in table and "centroid median <= 1.0 %" in table
