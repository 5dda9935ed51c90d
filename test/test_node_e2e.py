"""vitron_node running in its own process, exercised from this one over real DDS (loopback, this run's domain id):
lifecycle, every service, action and topic, two cameras, compressed input, QoS mismatch, parameters."""

from __future__ import annotations

import time

import pytest

from test.ros_harness import (
    CameraFeed,
    NodeProcess,
    Probe,
    scene,
    stamp_of,
    wait_future,
    wait_until,
)

EDIT_STEPS = 40
BASE = {"profile": "tiny", "device": "cpu", "diagnostics_period_s": 0.5, "reliability": "reliable"}


@pytest.fixture(scope="module")
def probe(ros):
    probe = Probe("vitron_e2e_probe")
    yield probe
    probe.close()


@pytest.fixture(scope="module")
def node(ros, tiny_profile, tmp_path_factory, probe):
    """Two cameras, raw images, started active by autostart. The tiny editor takes 40 denoising steps here, so an
    Edit goal runs long enough to be cancelled midway."""
    import yaml

    from test.conftest import REPO

    profiles = yaml.safe_load((REPO / "config" / "profiles.yaml").read_text())
    profiles["profiles"]["tiny"]["editor"]["steps"] = EDIT_STEPS
    config_file = tmp_path_factory.mktemp("profiles") / "profiles.yaml"
    config_file.write_text(yaml.safe_dump(profiles))
    # front has aligned depth (its masks and tracks get 3D), rear has none
    params = {**BASE, "autostart": True, "image_topics": ["front/image", "rear/image"], "config_file": str(config_file),
              "depth_topics": ["front/depth/image", ""], "target_frame": "base_link"}
    process = NodeProcess(params, tmp_path_factory.mktemp("node") / "node.log")
    feed = CameraFeed(probe, {"front": "/front/image", "rear": "/rear/image"}, rate_hz=10.0,
                      depth={"front": "/front/depth/image"})
    try:
        wait_until(lambda: _state(probe, "/vitron") == "active" or not process.alive(), 120, "the node to activate")
        assert process.alive(), process.log()
        yield process
    finally:
        feed.stop()
        code = process.stop()
        log = process.log()
        assert code == 0, f"vitron_node exited with {code}:\n{log[-3000:]}"
        assert "Traceback" not in log and "raised" not in log, log[-3000:]  # no callback needed containing
        assert "context is invalid" not in log, log[-3000:]


def _state(probe: Probe, node_name: str) -> str:
    from lifecycle_msgs.srv import GetState

    try:
        return probe.call(GetState, f"{node_name}/get_state", GetState.Request(), timeout_s=5).current_state.label
    except TimeoutError:
        return ""


def _transition(probe: Probe, node_name: str, label: str) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
           "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP,
           "shutdown": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN}  # fmt: skip
    request = ChangeState.Request(transition=Transition(id=ids[label]))
    return probe.call(ChangeState, f"{node_name}/change_state", request, timeout_s=120).success


def _set_parameter(probe: Probe, node_name: str, name: str, value):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    return probe.call(SetParameters, f"{node_name}/set_parameters", request).results[0]


def _wait_frame(probe, camera="front"):
    from vitron_ros_msgs.srv import Segment

    # A Segment on the camera's latest frame succeeds once a frame has arrived.
    def ready():
        response = probe.call(Segment, "/vitron/segment", Segment.Request(camera=camera, everything=True))
        return not response.error

    wait_until(ready, 60, f"a frame from camera {camera}", period_s=0.3)


# -- services and topics --------------------------------------------------------------------------------------------
def test_query_service_answers_about_the_named_cameras_latest_frame_and_publishes_every_output(node, probe):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray, Detection3DArray
    from visualization_msgs.msg import MarkerArray
    from vitron_ros_msgs.msg import Answer, GroundedMaskArray, PixelBox
    from vitron_ros_msgs.srv import Query

    outputs = {name: probe.record(kind, f"/vitron/{name}") for name, kind in [
        ("answer", Answer), ("masks", GroundedMaskArray), ("detections", Detection2DArray), ("overlay", Image),
        ("markers", MarkerArray), ("detections_3d", Detection3DArray)]}  # fmt: skip
    diagnostics = probe.record(DiagnosticArray, "/diagnostics")
    _wait_frame(probe, "rear")
    request = Query.Request(request="segment the red square", camera="rear", request_id="q1",
                            boxes=[PixelBox(x1=30.0, y1=20.0, x2=90.0, y2=70.0)])
    answer = probe.call(Query, "/vitron/query", request).answer
    assert answer.error == "", answer.error
    assert answer.request_id == "q1" and answer.header.frame_id == "rear"
    assert answer.masks and answer.masks[0].source == "user_prompt"  # the drawn box is region 1
    assert answer.masks[0].mask.height == 120 and answer.masks[0].mask.width == 200
    wait_until(lambda: all(outputs[k] for k in ("masks", "detections", "overlay")), 20, "published outputs")
    stamp = stamp_of(answer.header)
    for name in ("masks", "detections", "overlay"):
        assert any(stamp_of(m.header) == stamp and m.header.frame_id == "rear" for m in outputs[name]), name
    # rear has no depth: no 3D is published for it, and each mask says why
    assert not answer.masks[0].object_3d.valid and "no depth topic for camera 'rear'" in answer.masks[0].object_3d.reason
    assert not any(m.header.frame_id == "rear" for m in outputs["detections_3d"] + outputs["markers"])
    wait_until(lambda: diagnostics, 10, "/diagnostics")
    names = {status.name for status in diagnostics[-1].status}
    assert {"vitron: models", "vitron: camera front", "vitron: camera rear", "vitron: node",
            "vitron: environment"} <= names
    environment = next(s for s in diagnostics[-1].status if s.name == "vitron: environment")  # vitron doctor's checks
    assert environment.level == bytes([0]) and environment.message.endswith("checks passed (vitron doctor)")
    assert any(v.key.startswith("torchvision") and "NMS runs" in v.value for v in environment.values)
    rear = next(s for s in diagnostics[-1].status if s.name == "vitron: camera rear")
    assert {v.key: v.value for v in rear.values}["depth"] == "no depth topic for this camera: no 3D"


def test_query_on_a_camera_with_aligned_depth_gives_each_mask_its_3d_position(node, probe):
    from diagnostic_msgs.msg import DiagnosticArray
    from vision_msgs.msg import Detection3DArray
    from visualization_msgs.msg import MarkerArray
    from vitron_ros_msgs.msg import PixelBox
    from vitron_ros_msgs.srv import Query

    from test.ros_harness import DEPTH_FX, image_msg

    detections_3d = probe.record(Detection3DArray, "/vitron/detections_3d")
    markers = probe.record(MarkerArray, "/vitron/markers")
    diagnostics = probe.record(DiagnosticArray, "/diagnostics")
    _wait_frame(probe, "front")
    request = Query.Request(request="segment this", camera="front", boxes=[PixelBox(x1=10.0, y1=5.0, x2=190.0, y2=115.0)])
    answer = probe.call(Query, "/vitron/query", request).answer
    assert answer.error == "", answer.error
    found = answer.masks[0].object_3d
    assert found.valid, found.reason
    # the scene's surfaces are at 1.0, 1.2 and 1.5 m; x, y back-projected through the camera_info's intrinsics
    assert min(abs(found.centroid.z - z) for z in (1.0, 1.2, 1.5)) < 0.02
    box = answer.masks[0].box
    assert abs(found.centroid.x) <= found.centroid.z * 100 / DEPTH_FX and found.inliers > 20
    assert found.box.size.x <= (box.x2 - box.x1 + 1) * found.centroid.z / DEPTH_FX + 0.05
    stamp = stamp_of(answer.header)
    mine = wait_until(lambda: [d for d in detections_3d if stamp_of(d.header) == stamp], 20, "detections_3d")[-1]
    assert mine.header.frame_id == "front" and mine.detections[0].id == "0"
    first = mine.detections[0]
    assert first.results[0].hypothesis.class_id == answer.masks[0].label
    assert first.results[0].pose.pose.position.z == pytest.approx(found.centroid.z)
    assert first.bbox.size.x == pytest.approx(found.box.size.x)
    drawn = wait_until(lambda: [m for m in markers if stamp_of(m.markers[0].header) == stamp], 10, "markers")[-1]
    cube = next(m for m in drawn.markers if m.type == 1)
    assert cube.pose.position.z == pytest.approx(found.box.center.position.z)
    # its own image, stamped long before any depth frame: its depth is not used, and the answer says why
    own = image_msg(scene(120, 200), "front", 123)
    answer = probe.call(Query, "/vitron/query", Query.Request(request="segment this", image=own, boxes=request.boxes)).answer
    assert not answer.masks[0].object_3d.valid
    assert "within 20 ms of the image" in answer.masks[0].object_3d.reason
    assert any(w.startswith("no 3D: no depth on front/depth/image within 20 ms") for w in answer.warnings)
    time.sleep(0.5)
    assert not [d for d in detections_3d if stamp_of(d.header) == 123]
    status = wait_until(lambda: [s for d in diagnostics for s in d.status if s.name == "vitron: camera front"], 10,
                        "diagnostics")[-1]
    values = {v.key: v.value for v in status.values}
    assert "frames matched" in values["depth"] or "within 20 ms" in values["depth"], values["depth"]
    assert "tf2_ros is not installed" in node.log()  # target_frame is set; this machine has no tf2


def test_query_with_its_own_image_and_bad_inputs_give_errors_that_name_the_problem(node, probe):
    from vitron_ros_msgs.msg import PixelBox, PixelPoint
    from vitron_ros_msgs.srv import Query, Segment

    from test.ros_harness import image_msg

    own = image_msg(scene(60, 80), "handheld", 123)
    answer = probe.call(Query, "/vitron/query", Query.Request(request="what is this?", image=own)).answer
    assert answer.error == "" and answer.header.frame_id == "handheld" and stamp_of(answer.header) == 123
    bad = image_msg(scene(60, 80), "handheld", 1, encoding="bayer_rggb8")
    answer = probe.call(Query, "/vitron/query", Query.Request(request="what?", image=bad)).answer
    assert "bayer_rggb8" in answer.error
    answer = probe.call(Query, "/vitron/query", Query.Request(request="x", camera="nowhere")).answer
    assert "unknown camera 'nowhere'" in answer.error
    outside = Query.Request(request="what is this?", boxes=[PixelBox(x1=10.0, y1=10.0, x2=500.0, y2=50.0)])
    assert "boxes[0]" in probe.call(Query, "/vitron/query", outside).answer.error
    assert "non-empty" in probe.call(Query, "/vitron/query", Query.Request(request="  ")).answer.error
    long = probe.call(Query, "/vitron/query", Query.Request(request="the red mug " * 900)).answer
    assert "context" in long.error
    nan_point = Segment.Request(points=[PixelPoint(x=float("nan"), y=3.0, label=1)])
    assert "points[0]" in probe.call(Segment, "/vitron/segment", nan_point).error


def test_segment_service_masks_per_box_and_everything(node, probe):
    from vitron_ros_msgs.msg import PixelBox
    from vitron_ros_msgs.srv import Segment

    _wait_frame(probe)
    boxes = [PixelBox(x1=30.0, y1=20.0, x2=90.0, y2=70.0), PixelBox(x1=120.0, y1=60.0, x2=180.0, y2=110.0)]
    response = probe.call(Segment, "/vitron/segment", Segment.Request(boxes=boxes))
    assert response.error == "" and [m.label for m in response.masks.masks] == ["box 0", "box 1"]
    assert response.masks.header.frame_id == "front"
    everything = probe.call(Segment, "/vitron/segment", Segment.Request(everything=True))
    assert everything.error == "" and all(m.source == "everything" for m in everything.masks.masks)


def test_topic_query_publishes_an_answer_with_the_first_cameras_header(node, probe):
    from std_msgs.msg import String
    from vitron_ros_msgs.msg import Answer

    answers = probe.record(Answer, "/vitron/answer")
    publisher = probe.node.create_publisher(String, "/vitron/query", 10)
    _wait_frame(probe)

    def answered():
        publisher.publish(String(data="what is in the image?"))
        return [a for a in answers if a.request == "what is in the image?" and not a.error]

    found = wait_until(answered, 60, "an answer on /vitron/answer", period_s=1.0)
    assert found[0].header.frame_id == "front"


def test_add_and_remove_objects_publish_tracks_and_overlay_with_the_frame_header(node, probe):
    from sensor_msgs.msg import Image
    from vision_msgs.msg import BoundingBox2D, Detection3DArray
    from visualization_msgs.msg import MarkerArray
    from vitron_ros_msgs.msg import TrackedObjectArray
    from vitron_ros_msgs.srv import AddObjects, RemoveObject

    tracks = probe.record(TrackedObjectArray, "/vitron/tracks")
    overlays = probe.record(Image, "/vitron/tracks_overlay")
    tracks_3d = probe.record(Detection3DArray, "/vitron/tracks_3d")
    tracks_markers = probe.record(MarkerArray, "/vitron/tracks_markers")
    _wait_frame(probe)
    box = BoundingBox2D(size_x=60.0, size_y=50.0)
    box.center.position.x, box.center.position.y = 60.0, 45.0
    added = probe.call(AddObjects, "/vitron/add_objects",
                       AddObjects.Request(bbox_coords=[box], bbox_object_ids=["mug"], requests=["the blue square"],
                                          request_object_ids=["blue"]))  # fmt: skip
    assert added.success, added.message
    assert sorted(added.object_ids) == ["blue", "mug"]
    seen = wait_until(lambda: [t for t in tracks if {o.object_id for o in t.objects} >= {"mug", "blue"}], 30, "tracks")
    assert seen[-1].header.frame_id == "front"
    wait_until(lambda: overlays, 10, "tracks_overlay")
    # front has depth: every tracked object gets 3D, published with its track id, the frame's header, in front of
    # the 1.5 m wall
    tracked = wait_until(lambda: [t for t in tracks_3d if t.detections], 30, "tracks_3d")[-1]
    assert {d.id for d in tracked.detections} <= {"mug", "blue"} and tracked.header.frame_id == "front"
    frame = next(t for t in tracks if stamp_of(t.header) == stamp_of(tracked.header))
    visible = {o.object_id: o for o in frame.objects if o.state == o.TRACKED}
    assert set(visible) == {d.id for d in tracked.detections}
    for detection in tracked.detections:
        found = visible[detection.id].object_3d
        assert found.valid and 0.9 < found.centroid.z < 1.6, found
        assert detection.results[0].pose.pose.position.z == pytest.approx(found.centroid.z)
    assert wait_until(lambda: tracks_markers, 10, "tracks_markers")[-1].markers[0].action == 3
    clash = probe.call(AddObjects, "/vitron/add_objects",
                       AddObjects.Request(bbox_coords=[box], bbox_object_ids=["mug"]))
    assert not clash.success and "mug" in clash.message
    outside = BoundingBox2D(size_x=60.0, size_y=50.0)
    outside.center.position.x, outside.center.position.y = 1e9, float("nan")
    bad = probe.call(AddObjects, "/vitron/add_objects", AddObjects.Request(bbox_coords=[outside], bbox_object_ids=["x"]))
    assert not bad.success and "bbox_coords[0]" in bad.message
    for object_id in ("mug", "blue"):
        removed = probe.call(RemoveObject, "/vitron/remove_object", RemoveObject.Request(object_id=object_id))
        assert removed.success, removed.message
    missing = probe.call(RemoveObject, "/vitron/remove_object", RemoveObject.Request(object_id="mug"))
    assert not missing.success and "unknown object id 'mug'" in missing.message


# -- actions ------------------------------------------------------------------------------------------------------
def _send_goal(probe, action_type, name: str, goal, feedback: list, timeout_s: float = 60.0):
    from rclpy.action import ActionClient

    client = probe.clients.get(name)
    if client is None:
        client = probe.clients[name] = ActionClient(probe.node, action_type, name)
    assert client.wait_for_server(timeout_sec=30), f"action server {name} not available"
    handle = wait_future(client.send_goal_async(goal, feedback_callback=lambda f: feedback.append(f.feedback)),
                         timeout_s, f"{name} goal")
    assert handle.accepted
    return handle


def test_ask_action_streams_feedback_and_returns_the_answer(node, probe):
    from vitron_ros_msgs.action import Ask

    _wait_frame(probe)
    feedback: list = []
    handle = _send_goal(probe, Ask, "/vitron/ask", Ask.Goal(request="segment the red square", request_id="a1"), feedback)
    result = wait_future(handle.get_result_async(), 60, "Ask result")
    assert result.result.answer.error == "" and result.result.answer.request_id == "a1"
    stages = [f.stage for f in feedback]
    assert stages[0] == "queued" and "llm_generate" in stages


def test_track_action_feedback_every_frame_result_and_cancel(node, probe):
    from action_msgs.msg import GoalStatus
    from vitron_ros_msgs.action import Track
    from vitron_ros_msgs.msg import PixelBox

    _wait_frame(probe)
    feedback: list = []
    goal = Track.Goal(box=PixelBox(x1=30.0, y1=20.0, x2=90.0, y2=70.0), object_id="goal_mug", duration_s=1.0)
    handle = _send_goal(probe, Track, "/vitron/track", goal, feedback)
    result = wait_future(handle.get_result_async(), 60, "Track result")
    assert result.status == GoalStatus.STATUS_SUCCEEDED, result.result.error
    assert result.result.frames >= 3 and result.result.object_id == "goal_mug"
    assert len(feedback) >= 3 and all(f.object.object_id == "goal_mug" for f in feedback)
    indices = [f.frame_index for f in feedback]
    assert indices == sorted(indices)

    endless: list = []
    handle = _send_goal(probe, Track, "/vitron/track", Track.Goal(box=goal.box, object_id="endless"), endless)
    wait_until(lambda: len(endless) >= 2, 30, "feedback of the endless goal")
    wait_future(handle.cancel_goal_async(), 30, "cancel")
    result = wait_future(handle.get_result_async(), 30, "cancelled Track result")
    assert result.status == GoalStatus.STATUS_CANCELED

    empty = _send_goal(probe, Track, "/vitron/track", Track.Goal(), [])
    result = wait_future(empty.get_result_async(), 30, "empty Track result")
    assert result.status == GoalStatus.STATUS_ABORTED and "empty" in result.result.error


def test_video_query_action_answers_about_the_recent_clip(node, probe):
    from vitron_ros_msgs.action import VideoQuery

    _wait_frame(probe)
    feedback: list = []
    handle = _send_goal(probe, VideoQuery, "/vitron/video_query",
                        VideoQuery.Goal(request="how many objects are there?", num_frames=4), feedback)
    result = wait_future(handle.get_result_async(), 90, "VideoQuery result").result
    assert result.answer.error == "" and result.clip_frames >= 2
    assert result.answer.header.frame_id == "front" and feedback[0].stage == "queued"


def test_ask_cancel_stops_generation(node, probe):
    from action_msgs.msg import GoalStatus
    from vitron_ros_msgs.action import Ask

    _wait_frame(probe)
    feedback: list = []
    handle = _send_goal(probe, Ask, "/vitron/ask", Ask.Goal(request="describe everything in detail"), feedback)
    wait_future(handle.cancel_goal_async(), 30, "cancel")
    result = wait_future(handle.get_result_async(), 60, "cancelled Ask result")
    # generation may finish before the cancel lands; either way the goal ends and says how
    assert result.status in (GoalStatus.STATUS_CANCELED, GoalStatus.STATUS_SUCCEEDED)
    if result.status == GoalStatus.STATUS_CANCELED:
        assert result.result.answer.error == "cancelled"


def _edit_reply(instruction: str, region: str = "[0.1, 0.1, 0.5, 0.5]") -> str:
    return f"<module>editor</module> <instruction>{instruction}</instruction> <Region>{region}</Region>"


def test_edit_action_feedback_per_step_marked_images_exact_outside_and_cancel(node, probe):
    import numpy as np
    from action_msgs.msg import GoalStatus
    from vitron_ros_msgs.action import Edit
    from vitron_ros_msgs.msg import SyntheticImage

    from test.ros_harness import image_msg

    edited = probe.record(SyntheticImage, "/vitron/edited")
    source = scene()
    goal = Edit.Goal(request="add a red circle", request_id="e1", reply=_edit_reply("add: a red circle"),
                     image=image_msg(source, "given_frame", 1234))
    feedback: list = []
    result = wait_future(_send_goal(probe, Edit, "/vitron/edit", goal, feedback).get_result_async(), 120, "Edit result")
    assert result.status == GoalStatus.STATUS_SUCCEEDED, result.result.answer.error
    [image] = result.result.images
    assert image.synthetic and (image.kind, image.specialist, image.task) == ("edited", "editor", "add")
    assert image.header.frame_id == image.image.header.frame_id == "given_frame" and stamp_of(image.header) == 1234
    pixels = np.frombuffer(bytes(image.image.data), np.uint8).reshape(source.shape)
    region = np.frombuffer(bytes(image.region.data), np.uint8).reshape(source.shape[:2]) > 0
    assert region.any() and np.array_equal(pixels[~region], source[~region])
    denoise = [(f.step, f.steps) for f in feedback if f.stage == "denoise"]
    # "queued" is published as the goal is accepted; a new action client's feedback subscription can still be
    # matching then (DDS discovery), so the first feedback seen is "queued" or the next stage, "prompt"
    assert feedback[0].stage in ("queued", "prompt") and denoise == [(i, EDIT_STEPS) for i in range(1, EDIT_STEPS + 1)]
    wait_until(lambda: edited, 10, "a message on ~/edited")
    assert all(m.synthetic for m in edited) and edited[0].request_id == "e1"

    # cancel after the first denoising step: the loop stops, the goal ends cancelled
    feedback = []
    handle = _send_goal(probe, Edit, "/vitron/edit", Edit.Goal(request="x", reply=_edit_reply("add: a blue square")),
                        feedback)
    wait_until(lambda: any(f.stage == "denoise" for f in feedback), 60, "the first denoising step")
    wait_future(handle.cancel_goal_async(), 30, "cancel")
    result = wait_future(handle.get_result_async(), 60, "cancelled Edit result")
    assert result.status == GoalStatus.STATUS_CANCELED and result.result.answer.error == "cancelled"
    assert max(f.step for f in feedback) < EDIT_STEPS and not result.result.images

    # a bad edit aborts with a reason that names it
    bad = Edit.Goal(request="x", reply=_edit_reply("paint: the red square"))
    result = wait_future(_send_goal(probe, Edit, "/vitron/edit", bad, []).get_result_async(), 60, "bad Edit result")
    assert result.status == GoalStatus.STATUS_ABORTED
    assert "no image was edited or generated" in result.result.answer.error and "paint" in result.result.answer.error


def test_edit_action_makes_a_clip_from_the_camera_frame_on_generated_video(node, probe):
    from action_msgs.msg import GoalStatus
    from vitron_ros_msgs.action import Edit
    import yaml
    from vitron_ros_msgs.msg import SyntheticImage

    from test.conftest import REPO

    frames = yaml.safe_load((REPO / "config" / "profiles.yaml").read_text())["profiles"]["tiny"]["video_generator"]["frames"]
    published = probe.record(SyntheticImage, "/vitron/generated_video")
    _wait_frame(probe, "front")
    reply = "<module>video_generator</module> <instruction>image_to_video: the red square moves left</instruction>"
    goal = Edit.Goal(request="show the red square moving left", request_id="g1", camera="front", reply=reply)
    feedback: list = []
    result = wait_future(_send_goal(probe, Edit, "/vitron/edit", goal, feedback).get_result_async(), 120, "Edit result")
    assert result.status == GoalStatus.STATUS_SUCCEEDED, result.result.answer.error
    clip = result.result.images
    assert [m.frame for m in clip] == list(range(frames)) and all(m.frame_count == frames for m in clip)
    height, width = scene().shape[:2]  # the camera's frame size: image-to-video keeps it
    for m in clip:
        assert m.synthetic and (m.kind, m.specialist, m.task) == ("generated_video", "video_generator", "image_to_video")
        assert m.fps > 0 and m.header.frame_id == "front" and (m.image.height, m.image.width) == (height, width)
        assert m.image.encoding == "rgb8" and set(bytes(m.region.data)) == {255}  # every pixel is synthetic
    assert any(f.stage == "denoise" for f in feedback)
    mine = wait_until(lambda: (lambda got: got if len(got) == frames else None)(
        [m for m in published if m.request_id == "g1"]), 10, "the clip's frames on ~/generated_video")
    assert [m.frame for m in mine] == list(range(frames))  # in order, none dropped


def test_edit_video_action_edits_the_recent_frames_through_the_tracker_and_cancels(node, probe):
    import numpy as np
    from action_msgs.msg import GoalStatus
    from vitron_ros_msgs.action import EditVideo
    from vitron_ros_msgs.msg import SyntheticImage

    edited = probe.record(SyntheticImage, "/vitron/edited")
    _wait_frame(probe, "front")
    reply = ("<module>editor</module> <instruction>remove: the red square</instruction> "
             "<Region>[0.15, 0.17, 0.55, 0.58]</Region> [SEG]")
    goal = EditVideo.Goal(request="remove the red square", request_id="v1", camera="front", reply=reply, max_frames=2)
    feedback: list = []
    handle = _send_goal(probe, EditVideo, "/vitron/edit_video", goal, feedback)
    result = wait_future(handle.get_result_async(), 240, "EditVideo result")
    assert result.status == GoalStatus.STATUS_SUCCEEDED, result.result.answer.error
    done = result.result
    assert done.frames_edited + done.frames_unchanged == 2 and done.frames_edited >= 1
    assert [f.frame for f in feedback] == [1, 2] and all(f.frames == 2 for f in feedback)
    mine = wait_until(lambda: [m for m in edited if m.request_id == "v1"], 10, "edited frames on ~/edited")
    assert len({stamp_of(m.header) for m in mine}) == done.frames_edited  # one per frame, each its own header
    for m in mine:
        assert m.synthetic and m.header.frame_id == "front" and m.label == "remove: the red square"
        region = np.frombuffer(bytes(m.region.data), np.uint8).reshape(m.region.height, m.region.width) > 0
        assert region.any() and not region.all()

    # live, cancelled after its first frame
    feedback = []
    live = EditVideo.Goal(request="remove the red square", camera="front", reply=reply, live=True)
    handle = _send_goal(probe, EditVideo, "/vitron/edit_video", live, feedback)
    wait_until(lambda: feedback, 120, "the first live frame")
    wait_future(handle.cancel_goal_async(), 30, "cancel")
    result = wait_future(handle.get_result_async(), 120, "cancelled EditVideo result")
    assert result.status == GoalStatus.STATUS_CANCELED

    # a request that edits nothing the tracker could follow aborts with the reason
    bad = EditVideo.Goal(request="hello", camera="front", reply="<module>segmenter</module> hi")
    result = wait_future(_send_goal(probe, EditVideo, "/vitron/edit_video", bad, []).get_result_async(), 60, "bad")
    assert result.status == GoalStatus.STATUS_ABORTED and "nothing to track" in result.result.answer.error


# -- parameters -----------------------------------------------------------------------------------------------------
def test_parameters_are_described_and_bad_values_refused_with_a_reason(node, probe):
    from rcl_interfaces.srv import DescribeParameters

    described = probe.call(DescribeParameters, "/vitron/describe_parameters",
                           DescribeParameters.Request(names=["reliability", "max_pending_queries"]))
    assert "best_effort" in described.descriptors[0].description
    refused = _set_parameter(probe, "/vitron", "reliability", "sometimes")
    assert not refused.successful and "reliability" in refused.reason
    refused = _set_parameter(probe, "/vitron", "max_pending_queries", -3)
    assert not refused.successful and ">= 0" in refused.reason
    accepted = _set_parameter(probe, "/vitron", "max_pending_queries", 3)
    assert accepted.successful


# -- a second node: lifecycle by hand, compressed input, QoS mismatch -----------------------------------------------
@pytest.mark.slow
def test_lifecycle_by_hand_failures_are_logged_and_retriable_and_compressed_input_works(ros, tiny_profile, probe,
                                                                                    tmp_path):
    from vitron_ros_msgs.srv import Segment

    from diagnostic_msgs.msg import DiagnosticArray

    params = {**BASE, "autostart": False, "profile": "no_such_profile", "transport": "compressed",
              "image_topics": ["/side/image"]}
    process = NodeProcess(params, tmp_path / "node.log", namespace="/second")
    diagnostics = probe.record(DiagnosticArray, "/diagnostics")
    feed = CameraFeed(probe, {"side": "/side/image/compressed"}, rate_hz=10.0, compressed=True)
    name = "/second/vitron"
    try:
        wait_until(lambda: _state(probe, name) == "unconfigured", 60, "the second node")
        assert not _transition(probe, name, "configure")
        wait_until(lambda: "no_such_profile" in process.log(), 10, "the configure failure in the log")
        assert _state(probe, name) == "unconfigured"
        assert _set_parameter(probe, name, "profile", "default").successful
        assert _transition(probe, name, "configure")
        assert not _transition(probe, name, "activate")  # default's checkpoints are not on this machine
        wait_until(lambda: "activate failed: cannot load profile 'default'" in process.log(), 10, "the reason")
        assert _state(probe, name) == "inactive"
        # the inactive node says why in /diagnostics: the doctor's checks at configure, with the command to run
        assert "environment: checkpoints: llm: hub model 'llava-hf/llava-1.5-7b-hf'" in process.log()

        def why():
            return [s for d in list(diagnostics) for s in d.status if s.name == "vitron: environment"
                    and s.level == bytes([2]) and "vitron models fetch --profile default" in s.message]

        status = wait_until(why, 30, "the missing checkpoints in /diagnostics")[-1]
        assert "checkpoints: llm: hub model 'llava-hf/llava-1.5-7b-hf' is not in the local Hugging Face cache" in \
            status.message
        assert _transition(probe, name, "cleanup")
        assert _set_parameter(probe, name, "profile", "tiny").successful
        assert _transition(probe, name, "configure") and _transition(probe, name, "activate")
        assert _state(probe, name) == "active"

        def segmented():
            response = probe.call(Segment, f"{name}/segment", Segment.Request(everything=True))
            return response if not response.error else None

        response = wait_until(segmented, 60, "a segment on a compressed frame", period_s=0.3)
        assert response.masks.header.frame_id == "side"
        assert _transition(probe, name, "deactivate") and _state(probe, name) == "inactive"
        answer = probe.call(Segment, f"{name}/segment", Segment.Request(everything=True))
        assert "not loaded" in answer.error
        assert _transition(probe, name, "cleanup") and _state(probe, name) == "unconfigured"
        assert _transition(probe, name, "shutdown") and _state(probe, name) == "finalized"
    finally:
        feed.stop()
        code = process.stop()
    log = process.log()
    assert code == 0, log[-3000:]
    assert "InvalidHandle" not in log and "context is invalid" not in log, log[-3000:]


def test_an_incompatible_qos_publisher_is_reported_in_log_and_diagnostics(ros, tiny_profile, probe, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    params = {**BASE, "autostart": True, "image_topics": ["/mismatch/image"], "reliability": "reliable"}
    process = NodeProcess(params, tmp_path / "node.log", namespace="/third")
    diagnostics = probe.record(DiagnosticArray, "/diagnostics")
    best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    publisher = probe.node.create_publisher(Image, "/mismatch/image", best_effort)
    try:
        wait_until(lambda: "incompatible QoS on mismatch/image" in process.log() or
                   "incompatible QoS on /mismatch/image" in process.log(), 60, "the QoS warning in the log")

        def reported():
            for array in list(diagnostics):
                for status in array.status:
                    values = {kv.key: kv.value for kv in status.values}
                    if status.name == "vitron: node" and int(values.get("qos_incompatible_events", "0")) > 0:
                        return status
            return None

        status = wait_until(reported, 30, "the QoS problem in /diagnostics")
        assert "reliability" in status.message.lower() or "RELIABILITY" in status.message
    finally:
        probe.node.destroy_publisher(publisher)
        assert process.stop() == 0


def test_launch_file_arguments_and_params_file_reach_the_node_as_its_declared_parameters(ros, tiny_profile, probe,
                                                                                         tmp_path):
    """launch_ros is not installable here, so the launch file is read for what it passes, and the node is started
    with exactly the command line launch_ros builds from it (--params-file, -p overrides, -r remaps)."""
    import ast

    import yaml
    from rcl_interfaces.srv import GetParameters

    from test.ros_harness import REPO
    from vitron_ros.ros.parameters import NodeParameters

    tree = ast.parse((REPO / "launch" / "vitron.launch.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") in
             ("DeclareLaunchArgument", "LifecycleNode")]  # fmt: skip
    arguments = {c.args[0].value for c in calls if c.func.id == "DeclareLaunchArgument"}
    (node_call,) = [c for c in calls if c.func.id == "LifecycleNode"]
    keywords = {k.arg: k.value for k in node_call.keywords}
    overrides = next(e for e in keywords["parameters"].elts if isinstance(e, ast.Dict))
    override_names = {k.value for k in overrides.keys}
    remapped = {e.elts[0].value for e in keywords["remappings"].elts}
    declared = set(NodeParameters.descriptions())
    assert override_names <= declared and override_names <= arguments
    assert {"namespace", "params_file", "image", "camera_info"} <= arguments and remapped == {"image", "camera_info"}
    shipped = yaml.safe_load((REPO / "config" / "vitron.yaml").read_text())["/**"]["ros__parameters"]
    assert set(shipped) == declared  # the params file sets every declared parameter, and nothing else

    params_file = tmp_path / "robot.yaml"
    robot = {**shipped, "max_pending_queries": 5, "clip_length": 9, "camera_names": ["head"]}
    params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": robot}}))
    args = ("--params-file", str(params_file), "-p", "profile:=tiny", "-p", "device:=cpu", "-p", "autostart:=false",
            "-r", "image:=/launch/color/image_raw", "-r", "camera_info:=/launch/color/camera_info")
    process = NodeProcess({}, tmp_path / "node.log", namespace="/launched", extra_args=args)
    name = "/launched/vitron"
    try:
        wait_until(lambda: _state(probe, name) == "unconfigured", 60, "the launched node")
        names = sorted(declared)
        values = probe.call(GetParameters, f"{name}/get_parameters", GetParameters.Request(names=names)).values
        got = {n: _parameter_value(v) for n, v in zip(names, values, strict=True)}
        expected = {**robot, "profile": "tiny", "device": "cpu", "autostart": False}
        assert got == expected
        assert _transition(probe, name, "configure")
        wait_until(lambda: probe.node.count_publishers("/launched/vitron/masks") > 0 and
                   probe.node.count_subscribers("/launch/color/image_raw") > 0, 10, "the remapped image topic")
        assert probe.node.count_subscribers("/launch/color/camera_info") > 0
    finally:
        assert process.stop() == 0


def _parameter_value(value):
    from rcl_interfaces.msg import ParameterType

    return {ParameterType.PARAMETER_BOOL: lambda: value.bool_value,
            ParameterType.PARAMETER_INTEGER: lambda: value.integer_value,
            ParameterType.PARAMETER_DOUBLE: lambda: value.double_value,
            ParameterType.PARAMETER_STRING: lambda: value.string_value,
            ParameterType.PARAMETER_STRING_ARRAY: lambda: list(value.string_array_value)}[value.type]()  # fmt: skip


@pytest.mark.slow
def test_a_specialist_that_fails_to_load_on_first_use_leaves_the_node_serving_with_the_reason_in_answer_and_diagnostics(
        ros, tiny_profile, probe, tmp_path):
    """Specialists load on first use (preload_specialists false); the editor's checkpoint is broken. An Edit goal
    ends with the load error, segmentation keeps working, and /diagnostics names the failure and the backends."""
    import yaml
    from action_msgs.msg import GoalStatus
    from diagnostic_msgs.msg import DiagnosticArray
    from vitron_ros_msgs.action import Edit
    from vitron_ros_msgs.srv import Segment

    from test.conftest import REPO
    from test.ros_harness import image_msg

    broken = tmp_path / "broken_diffusion"
    broken.mkdir()
    (broken / "model_index.json").write_text("{ not json")
    profiles = yaml.safe_load((REPO / "config" / "profiles.yaml").read_text())
    profiles["profiles"]["tiny"]["editor"]["model"] = str(broken)
    profiles["profiles"]["tiny"]["editor"]["instruct_model"] = None
    config_file = tmp_path / "profiles.yaml"
    config_file.write_text(yaml.safe_dump(profiles))
    params = {**BASE, "autostart": True, "image_topics": ["/lazy/image"], "config_file": str(config_file),
              "preload_specialists": False, "memory_budget_mb": 512}
    process = NodeProcess(params, tmp_path / "node.log", namespace="/lazy")
    diagnostics = probe.record(DiagnosticArray, "/diagnostics")
    try:
        wait_until(lambda: _state(probe, "/lazy/vitron") == "active" or not process.alive(), 120, "the node to activate")
        assert process.alive(), process.log()
        goal = Edit.Goal(request="add a red circle", reply=_edit_reply("add: a red circle"),
                         image=image_msg(scene(), "given_frame", 7))
        result = wait_future(_send_goal(probe, Edit, "/lazy/vitron/edit", goal, []).get_result_async(), 120, "Edit")
        assert result.status == GoalStatus.STATUS_ABORTED
        assert "the editor could not be loaded: CheckpointLoadError" in result.result.answer.error
        request = Segment.Request(image=image_msg(scene(), "given_frame", 8), everything=True)
        segmented = probe.call(Segment, "/lazy/vitron/segment", request)
        assert not segmented.error and len(segmented.masks.masks) > 0  # the segmenter loaded and serves

        def reported():
            for array in list(diagnostics):
                for status in array.status:
                    values = {kv.key: kv.value for kv in status.values}
                    if status.name == "vitron: models" and "editor_load_error" in values and \
                            "segmenter" in values.get("specialists_loaded", ""):
                        return status, values
            return None

        status, values = wait_until(reported, 30, "the editor's load error in /diagnostics")
        assert "the editor could not be loaded" in status.message and status.level == bytes([1])  # WARN
        assert values["memory_budget_mb"] == "512" and values["segmenter.sam_image_encoder_backend"] == "torch float32"
        assert values["llm.clip_vision_backend"] == "torch float32" and float(values["segmenter_mb"]) > 0
    finally:
        assert process.stop() == 0
    assert "Traceback" not in process.log()
