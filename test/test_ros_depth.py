"""Aligned depth in the ROS layer, without rclpy: stamp matching, depth and camera_info conversion, and 3D on the
handlers' answers (Object3D per mask, Detection3DArray, markers, the target frame at the image's stamp)."""

import threading
import time

import numpy as np
import pytest

from vitron_ros.core.lifting import RigidTransform
from vitron_ros.ros.depth import CameraDepth, DepthLifter, camera_from_info, depth_from_image
from vitron_ros.ros.frame_buffer import CameraFrames
from vitron_ros.ros.handlers import VitronHandlers
from vitron_ros.ros.image_conversions import ImageConversionError, numpy_to_image
from vitron_ros.ros.interfaces import TypestoreFactory, header, stamp_ns, typestore

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def factory():
    return TypestoreFactory()


def _depth(factory, stamp, value_mm=1000, shape=(120, 160), frame_id="cam_optical"):
    return numpy_to_image(np.full(shape, value_mm, np.uint16), "16UC1", factory, header(factory, stamp, frame_id))


def _info(factory, shape=(120, 160), fx=100.0):
    h, w = shape
    return factory.new("sensor_msgs/msg/CameraInfo", height=h, width=w, distortion_model="plumb_bob", d=np.zeros(5),
                       k=np.array([fx, 0, (w - 1) / 2, 0, fx, (h - 1) / 2, 0, 0, 1.0]), r=np.eye(3).ravel(),
                       p=np.zeros(12), header=header(factory, 0, "cam_optical"))


def test_the_nearest_depth_within_tolerance_is_used_never_the_latest_to_arrive(factory):
    depth = CameraDepth("cam/depth", tolerance_s=0.02)
    depth.add_info(_info(factory))
    for offset_ms, value in ((30, 1300), (5, 1050), (-40, 960), (12, 1120)):  # arrival order is not time order
        depth.add_depth(_depth(factory, T0 + offset_ms * MS, value))
    found = depth.match(header(factory, T0, "cam_optical"))
    assert found.depth.data[0, 0] == 1050 and found.offset_s == pytest.approx(0.005)
    far = depth.match(header(factory, T0 + 200 * MS, "cam_optical"))
    assert far == "no depth on cam/depth within 20 ms of the image (nearest 170 ms away)"
    stats = depth.stats()
    assert (stats.received, stats.matched, stats.unmatched, stats.last_matched) == (4, 1, 1, False)


def test_a_late_depth_frame_is_waited_for_and_a_dead_topic_costs_no_wait(factory):
    depth = CameraDepth("cam/depth")
    depth.add_info(_info(factory))
    started = time.monotonic()
    assert depth.match(header(factory, T0, "x"), wait_s=1.0) == "no depth image received on cam/depth"
    assert time.monotonic() - started < 0.2
    depth.add_depth(_depth(factory, T0 - 100 * MS))
    threading.Timer(0.05, lambda: depth.add_depth(_depth(factory, T0 + 2 * MS, 1234))).start()
    found = depth.match(header(factory, T0, "x"), wait_s=2.0)
    assert not isinstance(found, str) and found.depth.data[0, 0] == 1234
    depth.add_depth(_depth(factory, T0 + 500 * MS))  # depth has moved past the image: no point waiting
    started = time.monotonic()
    assert "within 20 ms" in depth.match(header(factory, T0 + 100 * MS, "x"), wait_s=2.0)
    assert time.monotonic() - started < 0.2


def test_a_depth_topic_that_stopped_is_not_waited_for(factory):
    depth = CameraDepth("cam/depth")
    depth.add_info(_info(factory))
    depth.add_depth(_depth(factory, T0 - 100 * MS))
    depth._last_arrival -= 5.0  # its last frame came 5 s ago
    started = time.monotonic()
    assert "within 20 ms" in depth.match(header(factory, T0, "x"), wait_s=2.0)
    assert time.monotonic() - started < 0.2


def test_a_mask_that_cannot_be_lifted_fails_alone(factory):
    from vitron_ros.ros.depth import lift_all

    source = CameraDepth("cam/depth")
    source.add_info(_info(factory))
    source.add_depth(_depth(factory, T0))
    frame = source.match(header(factory, T0, "x"))
    good = np.zeros((120, 160), bool)
    good[40:80, 40:80] = True
    lifted = lift_all([(good.astype(np.uint8), None), (good, None)], frame)
    assert not lifted[0].ok and lifted[0].reason.startswith("lifting failed: VitronInputError: mask must be")
    assert lifted[1].ok and lifted[1].centroid[2] == pytest.approx(1.0)


def test_depth_and_camera_info_conversion_and_their_errors(factory):
    metres = numpy_to_image(np.full((4, 6), 1.25, np.float32), "32FC1", factory, header(factory, 1, "c"))
    assert depth_from_image(metres).metres()[0, 0] == pytest.approx(1.25)
    big_endian = factory.new("sensor_msgs/msg/Image", header=header(factory, 1, "c"), height=2, width=3,
                             encoding="16UC1", is_bigendian=1, step=6,
                             data=np.frombuffer(np.full((2, 3), 1500, ">u2").tobytes(), np.uint8))
    assert depth_from_image(big_endian).data[1, 2] == 1500
    rgb = numpy_to_image(np.zeros((4, 6, 3), np.uint8), "rgb8", factory, header(factory, 1, "c"))
    with pytest.raises(ImageConversionError, match="expected 16UC1"):
        depth_from_image(rgb)
    camera = camera_from_info(_info(factory, fx=321.0))
    assert (camera.fx, camera.cx, camera.width, camera.distortion_model) == (321.0, 79.5, 160, "plumb_bob")
    depth = CameraDepth("cam/depth")
    uncalibrated = _info(factory)
    uncalibrated.k = np.zeros(9)
    assert not depth.add_info(uncalibrated) and depth.stats().errors == 1
    assert "uncalibrated" in depth.stats().last_problem
    assert not depth.add_depth(rgb) and depth.stats().errors == 2
    depth.add_depth(_depth(factory, T0))
    assert depth.match(header(factory, T0, "x")) == "no camera_info for the depth on cam/depth yet"
    depth.add_info(_info(factory), colour=True)  # aligned depth shares the colour camera's intrinsics
    assert not isinstance(depth.match(header(factory, T0, "x")), str)


@pytest.fixture()
def rgbd_handlers(factory, tiny_pipeline):
    calls = []

    def transforms(target, source, image_header):
        calls.append((target, source, stamp_ns(image_header)))
        if stamp_ns(image_header) == T0 + 900 * MS:
            return "no transform cam_optical -> base_link at the image's stamp: extrapolation into the future"
        # the optical frame's z (forward) is base_link's x; 0.5 m up
        return RigidTransform.from_quaternion((-0.5, 0.5, -0.5, 0.5), (0.0, 0.0, 0.5), target)

    depth = {"front": CameraDepth("front/depth")}
    lifter = DepthLifter(depth, wait_s=0.0, target_frame="base_link", transforms=transforms)
    cameras = {"front": CameraFrames("front"), "rear": CameraFrames("rear")}
    handlers = VitronHandlers(factory, cameras, lifter=lifter)
    handlers.pipeline = tiny_pipeline
    depth["front"].add_info(_info(factory))
    return handlers, depth["front"], calls


def _box(factory):
    return [factory.new("vitron_ros_msgs/msg/PixelBox", x1=20.0, y1=20.0, x2=140.0, y2=100.0)]


def test_answers_carry_3d_per_mask_and_publish_detections_and_markers_at_the_true_position(factory, rgbd_handlers,
                                                                                          scene):
    handlers, depth, calls = rgbd_handlers
    rgb = np.ascontiguousarray(scene[:120, :160])
    depth.add_depth(_depth(factory, T0 + 1 * MS, 1500))
    image = numpy_to_image(rgb, "rgb8", factory, header(factory, T0, "cam_optical"))
    outcome = handlers.query("what is this?", image_msg=image, boxes=_box(factory), request_id="r")
    store = typestore()
    masks = outcome.answer.masks
    assert masks and outcome.answer.warnings == []
    published = outcome.outputs.by_topic()
    assert {"detections_3d", "markers", "detections_3d_target"} <= set(published)
    for topic, (typename, msg) in published.items():  # everything serialises as the real types
        store.deserialize_cdr(store.serialize_cdr(msg, typename), typename)
    detections = published["detections_3d"][1]
    valid = [m for m in masks if m.object_3d.valid]
    assert [d.id for d in detections.detections] == [str(m.id) for m in valid]
    for mask, detection in zip(valid, detections.detections, strict=True):
        assert mask.object_3d.centroid.z == pytest.approx(1.5, abs=1e-6)  # the wall at 1.5 m
        assert detection.results[0].hypothesis.class_id == mask.label
        assert detection.results[0].pose.pose.position.x == pytest.approx(mask.object_3d.centroid.x)
        assert detection.results[0].pose.covariance[0] == pytest.approx(mask.object_3d.covariance[0])
        assert detection.header.frame_id == "cam_optical" and stamp_ns(detection.header) == T0
    cubes = [m for m in published["markers"][1].markers if m.type == 1]
    assert [c.pose.position.z for c in cubes] == pytest.approx([m.object_3d.box.center.position.z for m in valid])
    target = published["detections_3d_target"][1]
    assert target.header.frame_id == "base_link" and stamp_ns(target.header) == T0  # the image's stamp, not now
    assert calls == [("base_link", "cam_optical", T0)]
    for mask, moved in zip(valid, target.detections, strict=True):
        # optical z (1.5 m ahead) is base_link x; optical y (down) is -z, lifted by 0.5 m
        c = mask.object_3d.centroid
        position = moved.results[0].pose.pose.position
        assert (position.x, position.y, position.z) == pytest.approx((c.z, -c.x, 0.5 - c.y), abs=1e-9)


def test_a_querys_depth_is_taken_with_its_frame_not_after_the_models_ran(factory, tiny_pipeline, scene):
    """A depth ring of two frames, overrun while the LLM generates: the answer still gets its frame's depth."""
    source = CameraDepth("front/depth", history=2)
    source.add_info(_info(factory))
    handlers = VitronHandlers(factory, {"front": CameraFrames("front")}, lifter=DepthLifter({"front": source}, 0.0))
    handlers.pipeline = tiny_pipeline
    source.add_depth(_depth(factory, T0, 1300))
    later = iter(range(1, 1000))

    def progress(stage, text):  # the camera keeps streaming meanwhile
        source.add_depth(_depth(factory, T0 + next(later) * 100 * MS, 1700))

    image = numpy_to_image(np.ascontiguousarray(scene[:120, :160]), "rgb8", factory, header(factory, T0, "cam"))
    outcome = handlers.query("what is this?", image_msg=image, boxes=_box(factory), progress=progress)
    assert source.stats().received > 3  # the ring was overrun
    valid = [m.object_3d for m in outcome.answer.masks if m.object_3d.valid]
    assert valid and all(o.centroid.z == pytest.approx(1.3) for o in valid)


def test_no_depth_within_tolerance_or_no_depth_topic_publishes_nothing_3d_and_says_why(factory, rgbd_handlers, scene):
    handlers, depth, calls = rgbd_handlers
    rgb = np.ascontiguousarray(scene[:120, :160])
    depth.add_depth(_depth(factory, T0 + 45 * MS))  # from another moment: not this image's
    image = numpy_to_image(rgb, "rgb8", factory, header(factory, T0, "cam_optical"))
    outcome = handlers.query("what is this?", image_msg=image, boxes=_box(factory))
    assert not {"detections_3d", "markers", "detections_3d_target"} & set(outcome.outputs.by_topic())
    assert all(not m.object_3d.valid and "within 20 ms" in m.object_3d.reason for m in outcome.answer.masks)
    assert outcome.answer.warnings[-1].startswith("no 3D: no depth on front/depth within 20 ms")
    rear = numpy_to_image(rgb, "rgb8", factory, header(factory, T0, "rear_optical"))
    outcome = handlers.query("what is this?", camera="rear", image_msg=rear, boxes=_box(factory))
    assert "no depth topic for camera 'rear'" in outcome.answer.masks[0].object_3d.reason
    assert handlers.lifter.status("rear") == (True, "no depth topic for this camera: no 3D")
    fine, text = handlers.lifter.status("front")
    assert not fine and "within 20 ms" in text
    # a transform missing at the image's stamp: the optical-frame 3D still publishes, the target one does not
    depth.add_depth(_depth(factory, T0 + 900 * MS))
    image = numpy_to_image(rgb, "rgb8", factory, header(factory, T0 + 900 * MS, "cam_optical"))
    outcome = handlers.query("what is this?", image_msg=image, boxes=_box(factory))
    assert {"detections_3d", "markers"} <= set(outcome.outputs.by_topic())
    assert "detections_3d_target" not in outcome.outputs.by_topic()
    assert "extrapolation into the future" in handlers.lifter.status("front")[1]
