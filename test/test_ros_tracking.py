"""Tracking through the node's handlers on rosbags' message classes: services, ~/tracks, the Track and
VideoQuery actions' logic, the tracking thread, and `vitron replay --track`."""

import threading
import time

import numpy as np
import pytest

from vitron_ros.cli import main
from vitron_ros.core.tracking.state import ObjectPrompt
from vitron_ros.core.video import ClipSampling
from vitron_ros.ros.frame_buffer import CameraFrames
from vitron_ros.ros.handlers import VitronHandlers
from vitron_ros.ros.image_conversions import image_to_numpy, numpy_to_image
from vitron_ros.ros.interfaces import TypestoreFactory, header, stamp_ns, typestore
from vitron_ros.ros.replay import write_image_bag
from vitron_ros.ros.tracking import STATE_CODES, TRACKED_OBJECT_ARRAY, run_track_goal
from vitron_ros.ros.tracking_loop import TrackingLoop

STAMP = 1_700_000_000_000_000_000
PERIOD = 100_000_000  # 10 Hz


@pytest.fixture(scope="module")
def factory():
    return TypestoreFactory()


@pytest.fixture()
def handlers(factory, tiny_pipeline):
    cameras = {"front": CameraFrames("front", ring_length=6), "rear": CameraFrames("rear")}
    handlers = VitronHandlers(factory, cameras, video_frames=3)
    handlers.attach(tiny_pipeline)
    return handlers


def _cdr(msg, typename):
    store = typestore()
    return store.deserialize_cdr(store.serialize_cdr(msg, typename), typename)


def _feed(handlers, factory, scene, count, camera="front", start=0):
    """Frames as the subscription delivers them; returns each frame's tracking step."""
    steps = []
    for i in range(start, start + count):
        rgb = np.roll(scene, 2 * i, axis=1)
        handlers.cameras[camera].add_image(numpy_to_image(rgb, "rgb8", factory, header(factory, STAMP + i * PERIOD, "cam")))
        steps.append(handlers.tracking[camera].process(handlers.cameras[camera].latest()))
    return steps


def _add_request(factory, **fields):
    return _cdr(factory.new("vitron_ros_msgs/srv/AddObjects_Request", **fields), "vitron_ros_msgs/srv/AddObjects_Request")


def _bbox(factory, cx, cy, w, h):
    centre = factory.new("vision_msgs/msg/Pose2D", position=factory.new("vision_msgs/msg/Point2D", x=cx, y=cy))
    return factory.new("vision_msgs/msg/BoundingBox2D", center=centre, size_x=w, size_y=h)


def test_add_objects_then_tracks_carry_the_frame_header_and_full_frame_masks(handlers, factory, scene):
    assert _feed(handlers, factory, scene, 1) == [None]  # nothing tracked yet: nothing computed or published
    req = _add_request(
        factory,
        bbox_coords=[_bbox(factory, 60.0, 45.0, 60.0, 50.0)], bbox_object_ids=["red"],
        point_coords=[factory.new("vision_msgs/msg/Point2D", x=150.0, y=85.0),
                      factory.new("vision_msgs/msg/Point2D", x=10.0, y=10.0)],
        point_object_ids=["blue", "blue"], point_labels=np.array([1, 0], np.int32),
        requests=["the red box"], request_object_ids=["asked"],
    )  # fmt: skip
    response = handlers.add_objects(req)
    assert response["success"], response["message"]
    assert response["object_ids"] == ["red", "blue", "asked"] and response["object_indices"] == [0, 1, 2]
    steps = _feed(handlers, factory, scene, 3, start=1)
    tracks = _cdr(steps[0].tracks_msg, TRACKED_OBJECT_ARRAY)
    # frame_index counts the camera's frames since tracking started, the one before any object was added included
    assert stamp_ns(tracks.header) == STAMP + PERIOD and tracks.header.frame_id == "cam" and tracks.frame_index == 1
    assert [o.object_id for o in tracks.objects] == ["red", "blue", "asked"]
    red = tracks.objects[0]
    assert red.state == STATE_CODES[steps[0].tracks.by_id("red").status] and red.prompted and red.label == "box"
    assert stamp_ns(red.header) == STAMP + PERIOD
    mask = image_to_numpy(red.mask)
    assert mask.shape == scene.shape[:2] and red.mask.encoding == "mono8" and set(np.unique(mask)) <= {0, 255}
    assert (mask > 0).sum() == steps[0].tracks.by_id("red").mask.sum() > 0
    for obj, state in zip(tracks.objects, steps[0].tracks.objects, strict=True):
        if state.mask.any():
            assert obj.mask.height == scene.shape[0]
        else:  # occluded or lost objects send an empty image
            assert obj.mask.height == 0 and len(obj.mask.data) == 0
    assert image_to_numpy(steps[0].overlay_msg).shape == scene.shape
    assert [o.label for o in tracks.objects][2] == "the red box"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"bbox_coords": "one", "bbox_object_ids": []}, "1 bbox_coords but 0 bbox_object_ids"),
        ({"bbox_coords": "one", "bbox_object_ids": ["a"], "requests": ["the mug"], "request_object_ids": ["a"]},
         "object id(s) ['a'] appear on more than one prompt"),
        ({}, "needs at least one box, point or request"),
        ({"requests": [" "]}, "request to track is empty"),
        ({"bbox_coords": "outside", "bbox_object_ids": ["far"]}, "lies outside the 200x120 image"),
    ],
)  # fmt: skip
def test_add_objects_errors_add_nothing(handlers, factory, scene, fields, error):
    _feed(handlers, factory, scene, 1)
    handlers.tracking["front"].add(ObjectPrompt(box_xyxy=(30, 20, 90, 70)), "kept")
    boxes = {"one": [_bbox(factory, 60.0, 45.0, 60.0, 50.0)], "outside": [_bbox(factory, 190.0, 45.0, 60.0, 50.0)]}
    if "bbox_coords" in fields:
        fields = {**fields, "bbox_coords": boxes[fields["bbox_coords"]]}
    response = handlers.add_objects(_add_request(factory, **fields))
    assert not response["success"] and error in response["message"]
    assert response["object_ids"] == ["kept"]  # all or nothing


def test_remove_object_and_its_errors(handlers, factory, scene):
    handlers.add_objects(_add_request(factory, bbox_coords=[_bbox(factory, 60.0, 45.0, 60.0, 50.0)], bbox_object_ids=["a"]))
    req = factory.new("vitron_ros_msgs/srv/RemoveObject_Request", object_id="nope")
    response = handlers.remove_object(req)
    assert not response["success"] and "unknown object id 'nope'; tracked ids: a" in response["message"]
    response = handlers.remove_object(factory.new("vitron_ros_msgs/srv/RemoveObject_Request", object_id="a"))
    assert response["success"] and response["object_ids"] == []
    other = handlers.remove_object(factory.new("vitron_ros_msgs/srv/RemoveObject_Request", object_id="a", camera="side"))
    assert not other["success"] and "unknown camera 'side'" in other["message"]


def test_track_goal_runs_for_its_duration_then_removes_its_object(handlers, factory, scene):
    goal = factory.new("vitron_ros_msgs/action/Track_Goal", box=factory.new(
        "vitron_ros_msgs/msg/PixelBox", x1=30.0, y1=20.0, x2=90.0, y2=70.0), object_id="cup", duration_s=0.35)
    tracking, feedback, result = handlers.tracking["front"], [], {}

    def run():
        result["msg"], result["outcome"] = run_track_goal(tracking, goal, factory, lambda: False, feedback.append, 0.05)

    worker = threading.Thread(target=run)
    worker.start()
    for _ in range(100):  # wait for the goal to add its object
        if tracking.object_ids():
            break
        time.sleep(0.01)
    _feed(handlers, factory, scene, 6)  # 0.5 s of frames at 10 Hz; the goal ends once 0.35 s of stamps passed
    worker.join(timeout=10)
    assert result["outcome"] == "succeeded" and tracking.object_ids() == []
    summary = _cdr(result["msg"], "vitron_ros_msgs/action/Track_Result")
    assert summary.object_id == "cup" and summary.frames == 5 and summary.error == ""
    assert summary.frames == summary.frames_tracked + summary.frames_occluded + summary.frames_lost
    assert summary.frames_tracked >= 1 and summary.last.object_id == "cup"
    assert feedback and [f.object.object_id for f in feedback] == ["cup"] * len(feedback)
    assert [f.frame_index for f in feedback] == sorted({f.frame_index for f in feedback})  # each frame once, in order


def test_track_goal_cancel_and_bad_goals(handlers, factory, scene):
    tracking = handlers.tracking["front"]
    _feed(handlers, factory, scene, 1)
    goal = factory.new("vitron_ros_msgs/action/Track_Goal", request="the red box")
    msg, outcome = run_track_goal(tracking, goal, factory, lambda: True, lambda _: None, 0.01)
    assert outcome == "canceled" and tracking.object_ids() == [] and msg.object_id.startswith("obj")
    empty = factory.new("vitron_ros_msgs/action/Track_Goal")
    msg, outcome = run_track_goal(tracking, empty, factory, lambda: False, lambda _: None, 0.01)
    assert outcome == "aborted" and "Track goal is empty" in msg.error
    both = factory.new("vitron_ros_msgs/action/Track_Goal", request="the mug",
                       box=factory.new("vitron_ros_msgs/msg/PixelBox", x1=1.0, y1=1.0, x2=5.0, y2=5.0))
    msg, outcome = run_track_goal(tracking, both, factory, lambda: False, lambda _: None, 0.01)
    assert outcome == "aborted" and "not both" in msg.error


def test_tracking_loop_processes_each_new_frame_once(handlers, factory, scene):
    published = []
    loop = TrackingLoop(handlers.cameras["front"], lambda: handlers.tracking.get("front"), published.append)
    assert loop.run_once() is None  # no frame yet
    handlers.add_objects(_add_request(factory, bbox_coords=[_bbox(factory, 60.0, 45.0, 60.0, 50.0)], bbox_object_ids=["a"]))
    handlers.cameras["front"].add_image(numpy_to_image(scene, "rgb8", factory, header(factory, STAMP, "cam")))
    assert loop.run_once() is not None and loop.run_once() is None  # same frame: not processed twice
    loop.start()
    handlers.cameras["front"].add_image(numpy_to_image(scene, "rgb8", factory, header(factory, STAMP + PERIOD, "cam")))
    loop.wake()
    for _ in range(200):
        if len(published) == 2:
            break
        time.sleep(0.01)
    loop.stop()
    assert [p.tracks.frame_index for p in published] == [0, 1]


def test_video_query_answers_about_the_ring_of_recent_frames(handlers, factory, scene):
    _feed(handlers, factory, scene, 5)
    outcome = handlers.video_query("what happened?", camera="front", request_id="v1")
    answer = _cdr(outcome.answer, "vitron_ros_msgs/msg/Answer")
    assert answer.error == "" and answer.request_id == "v1" and outcome.clip_frames == 5
    assert stamp_ns(answer.header) == STAMP  # about the clip's first frame
    frames = [f.rgb for f in handlers.cameras["front"].recent()]
    expected, _ = handlers.pipeline.ask_clip(frames, "what happened?", ClipSampling(frames=3))
    assert answer.raw_reply == expected.raw_reply
    assert len(outcome.clip_tracks) == (5 if expected.tracks else 0)
    empty = handlers.video_query("what happened?", camera="rear")
    assert "no frame received yet from camera 'rear'" in empty.answer.error


def test_replay_tracks_objects_through_a_bag(tiny_profile, scene, tmp_path, capsys):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    bag = tmp_path / "bag"
    write_image_bag(bag, [np.roll(scene, 3 * i, axis=1) for i in range(4)])
    out = tmp_path / "out"
    args = ["replay", str(bag), "--track-box", "30,20,90,70", "--track", "the blue box", "--out", str(out),
            "--profile", "tiny"]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "tracked obj1, obj2" in printed
    topics = {}
    with AnyReader([out], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        for connection, _, raw in reader.messages():
            topics.setdefault(connection.topic, []).append(reader.deserialize(raw, connection.msgtype))
    assert len(topics["/vitron/tracks"]) == 4 and "/vitron/answer" not in topics
    assert [o.object_id for o in topics["/vitron/tracks"][0].objects] == ["obj1", "obj2"]
    assert main(["replay", str(bag), "--out", str(tmp_path / "x"), "--profile", "tiny"]) == 2
    assert "replay needs --query, --track or --track-box" in capsys.readouterr().err


def test_tracks_keep_their_rate_while_a_grounding_runs_on_the_query_worker(factory, tiny_pipeline, scene, monkeypatch):
    """Grounding a language-started object runs the LLM; deferred to the camera's query worker it never holds the
    tracking thread: frames keep being tracked and published at the camera's rate while it runs."""
    from vitron_ros.ros.query_worker import QueryWorker

    worker = QueryWorker("front", max_pending=2)
    grounding = {"started": threading.Event(), "release": threading.Event(), "done": threading.Event()}
    real_ground = tiny_pipeline.ground_request

    def slow_ground(image, request):  # an LLM that takes as long as the test wants
        grounding["started"].set()
        grounding["release"].wait(10)
        found = real_ground(image, request)
        grounding["done"].set()
        return found or (np.ones(image.shape[:2], bool), 0.5)

    monkeypatch.setattr(tiny_pipeline, "ground_request", slow_ground)
    frames = CameraFrames("front")
    handlers = VitronHandlers(factory, {"front": frames}, run_in_background=lambda camera, job: worker.submit(job))
    handlers.attach(tiny_pipeline)
    published = []
    loop = TrackingLoop(frames, lambda: handlers.tracking.get("front"), lambda step: published.append(time.monotonic()))
    loop.start()
    try:
        tracking = handlers.tracking["front"]
        tracking.add(ObjectPrompt(box_xyxy=(30, 20, 90, 70)), "boxed")
        tracking.add(ObjectPrompt(request="the blue square"), "worded")
        for i in range(60):  # 3 s at 20 Hz; the grounding holds the worker for 1.5 s of it
            frames.add_image(numpy_to_image(np.roll(scene, i, axis=1), "rgb8", factory, header(factory, i, "cam")))
            loop.wake()
            if i == 30:
                assert grounding["started"].is_set(), "the grounding never started"
                grounding["release"].set()
            time.sleep(0.05)
        while_grounding = [t for t in published if t <= published[0] + 1.5]
        assert grounding["done"].wait(10)
        time.sleep(0.5)
        frames.add_image(numpy_to_image(scene, "rgb8", factory, header(factory, 99, "cam")))
        step = tracking.process(frames.latest())
    finally:
        loop.stop()
        worker.shutdown()
    # the tracker stepped on (nearly) every frame while the LLM was busy: the frame path never waited for it
    assert len(while_grounding) >= 15, f"{len(while_grounding)} frames tracked in the first 1.5 s"
    # the grounding's mask landed on a later frame: the object has its SAM 2 session and no grounding is pending
    worded = tracking.tracker.state.objects["worded"]
    assert worded.session is not None and not worded.grounding_in_flight, step.tracks.errors
