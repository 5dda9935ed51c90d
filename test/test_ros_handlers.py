"""The node's request handlers on rosbags' real message classes: answers, published messages, CDR round trips."""

import threading

import numpy as np
import pytest

from vitron_ros.core.masks import rle_encode
from vitron_ros.core.sketch import Sketch
from vitron_ros.ros.frame_buffer import CameraFrames
from vitron_ros.ros.handlers import VitronHandlers
from vitron_ros.ros.image_conversions import image_to_numpy, numpy_to_image
from vitron_ros.ros.interfaces import TypestoreFactory, header, stamp_ns, typestore
from vitron_ros.ros.result_messages import ANSWER, MASK_ARRAY

STAMP = 1_700_000_123_456_789_000


@pytest.fixture(scope="module")
def factory():
    return TypestoreFactory()


@pytest.fixture()
def handlers(factory, tiny_pipeline):
    cameras = {"front": CameraFrames("front", ring_length=4), "rear": CameraFrames("rear")}
    handlers = VitronHandlers(factory, cameras)
    handlers.pipeline = tiny_pipeline  # the session's tiny models, loaded once
    return handlers


def _image_msg(factory, rgb, frame_id="front_optical", stamp=STAMP):
    return numpy_to_image(rgb, "rgb8", factory, header(factory, stamp, frame_id))


def _cdr(msg, typename):
    store = typestore()
    return store.deserialize_cdr(store.serialize_cdr(msg, typename), typename)


def _same_header(msg, frame_id="front_optical", stamp=STAMP):
    return msg.header.frame_id == frame_id and stamp_ns(msg.header) == stamp


def test_query_answers_like_the_pipeline_and_every_output_carries_the_image_header(handlers, factory, scene):
    req = factory.new(
        "vitron_ros_msgs/srv/Query_Request",
        request="what is this?",
        request_id="r1",
        image=_image_msg(factory, scene),
        boxes=[factory.new("vitron_ros_msgs/msg/PixelBox", x1=120.0, y1=60.0, x2=180.0, y2=110.0)],
    )
    req = _cdr(req, "vitron_ros_msgs/srv/Query_Request")  # as it arrives over the wire
    outcome = handlers.query_from_request(req)
    expected, _ = handlers.pipeline(scene, "what is this?", [Sketch.box(120, 60, 180, 110)])

    answer = _cdr(outcome.answer, ANSWER)
    assert answer.error == "" and answer.request_id == "r1"
    assert outcome.timings["llm_generate"] > 0 and answer.latency_ms == pytest.approx(outcome.timings["total"] * 1000)
    assert answer.text == expected.answer and answer.raw_reply == expected.raw_reply
    assert len(answer.masks) == len(expected.masks) >= 1
    for got, want in zip(answer.masks, expected.masks):
        mask = image_to_numpy(got.mask)
        assert got.mask.encoding == "mono8" and mask.shape == scene.shape[:2]  # full-frame
        assert rle_encode(mask > 0) == want.rle
        assert got.label == want.label and got.source == want.source
        assert (got.box.x1, got.box.y1, got.box.x2, got.box.y2) == pytest.approx(want.box_xyxy)
    assert answer.masks[0].source == "user_prompt" and answer.masks[0].invocation_index == -1

    published = outcome.outputs.by_topic()
    assert set(published) == {"answer", "masks", "detections", "overlay"}  # no depth: nothing 3D
    for topic, (typename, msg) in published.items():
        assert _same_header(_cdr(msg, typename)), topic
    masks = _cdr(outcome.outputs.masks, MASK_ARRAY)
    assert all(_same_header(m) and _same_header(m.mask) for m in masks.masks)
    assert all(not m.object_3d.valid and m.object_3d.reason for m in masks.masks)
    detections = _cdr(outcome.outputs.detections, "vision_msgs/msg/Detection2DArray")
    first = detections.detections[0]
    x1, y1, x2, y2 = expected.masks[0].box_xyxy
    assert first.results[0].hypothesis.class_id == expected.masks[0].label
    assert (first.bbox.center.position.x, first.bbox.size_x) == pytest.approx(((x1 + x2) / 2, x2 - x1))
    overlay = image_to_numpy(_cdr(outcome.outputs.overlay, "sensor_msgs/msg/Image"))
    assert overlay.shape == scene.shape and not np.array_equal(overlay, scene)


def test_query_uses_the_named_cameras_latest_frame(handlers, factory, scene):
    old, new = scene.copy(), scene[::-1].copy()
    handlers.cameras["rear"].add_image(_image_msg(factory, old, "rear_optical", stamp=1))
    handlers.cameras["rear"].add_image(_image_msg(factory, new, "rear_optical", stamp=2))
    outcome = handlers.query("describe", camera="rear")
    assert outcome.answer.error == "" and stamp_ns(outcome.answer.header) == 2
    assert np.array_equal(outcome.frame.rgb, new)
    assert outcome.answer.header.frame_id == "rear_optical"


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"camera": "left"}, "unknown camera 'left'; cameras: front, rear"),
        ({"camera": "front"}, "no frame received yet from camera 'front'"),
        ({"boxes": "outside"}, "boxes[0]"),
        ({"points": "background"}, "points[0] has label 0"),
        ({"image": "bad_encoding"}, "unsupported image encoding 'bayer_rggb8'"),
        ({"request": "  "}, "request must be non-empty"),
    ],
)
def test_bad_queries_get_an_error_answer_not_an_exception(handlers, factory, scene, kwargs, error):
    args = {"request": "what is this?", "camera": "", "image_msg": _image_msg(factory, scene)}
    if kwargs.get("camera"):
        args["image_msg"] = None
        args["camera"] = kwargs["camera"]
    if kwargs.get("boxes") == "outside":
        args["boxes"] = [factory.new("vitron_ros_msgs/msg/PixelBox", x1=150.0, y1=10.0, x2=260.0, y2=50.0)]
    if kwargs.get("points") == "background":
        args["points"] = [factory.new("vitron_ros_msgs/msg/PixelPoint", x=5.0, y=5.0, label=0)]
    if kwargs.get("image") == "bad_encoding":
        args["image_msg"].encoding = "bayer_rggb8"
    if "request" in kwargs:
        args["request"] = kwargs["request"]
    outcome = handlers.query(**args)
    assert error in outcome.answer.error
    assert outcome.outputs is None
    _cdr(outcome.answer, ANSWER)  # an error answer is still a well-formed message


def test_query_before_activation_says_so(handlers, factory, scene):
    handlers.pipeline = None
    outcome = handlers.query("hi", image_msg=_image_msg(factory, scene))
    assert "models are not loaded" in outcome.answer.error and _same_header(outcome.answer)


def test_ask_progress_streams_stages_and_cancel_stops_it(handlers, factory, scene):
    events = []
    outcome = handlers.query("describe", image_msg=_image_msg(factory, scene), progress=lambda *e: events.append(e))
    assert outcome.answer.error == ""
    assert [s for s, _ in events][:4] == ["segmenter_prompts", "vision_encoder", "prompt", "llm_generate"]
    assert [t for s, t in events if s == "llm_generate" and t][-1] == outcome.answer.raw_reply

    from vitron_ros.core.errors import QueryCancelled

    def cancel(stage, text):
        if stage == "llm_generate":
            raise QueryCancelled("goal cancelled")

    cancelled = handlers.query("describe", image_msg=_image_msg(factory, scene), progress=cancel)
    assert cancelled.answer.error == "cancelled" and cancelled.outputs is None


def test_segment_boxes_points_and_everything(handlers, factory, scene):
    box = factory.new("vitron_ros_msgs/msg/PixelBox", x1=30.0, y1=20.0, x2=90.0, y2=70.0)
    points = [
        factory.new("vitron_ros_msgs/msg/PixelPoint", x=150.0, y=85.0, label=1),
        factory.new("vitron_ros_msgs/msg/PixelPoint", x=10.0, y=10.0, label=0),
    ]
    req = factory.new(
        "vitron_ros_msgs/srv/Segment_Request", image=_image_msg(factory, scene), boxes=[box], points=points
    )
    outcome = handlers.segment_from_request(_cdr(req, "vitron_ros_msgs/srv/Segment_Request"))
    masks = _cdr(outcome.masks, MASK_ARRAY)
    assert outcome.error == "" and [m.label for m in masks.masks] == ["box 0", "points"]
    assert _same_header(masks) and all(_same_header(m) for m in masks.masks)
    assert all(image_to_numpy(m.mask).any() for m in masks.masks)

    everything = handlers.segment(image_msg=_image_msg(factory, scene), everything=True)
    assert everything.error == "" and all(m.source == "everything" for m in everything.masks.masks)


@pytest.mark.parametrize(
    "points,boxes,error",
    [
        ([], [], "at least one point or box"),
        ([(5, 5, 0)], [], "all background"),
        ([(5, 5, 2)], [], "points[0] has label 2"),
        ([], [(10, 10, 5, 30)], "boxes[0]"),
    ],
)
def test_bad_segment_requests(handlers, factory, scene, points, boxes, error):
    outcome = handlers.segment(
        image_msg=_image_msg(factory, scene),
        points=[factory.new("vitron_ros_msgs/msg/PixelPoint", x=float(x), y=float(y), label=lab) for x, y, lab in points],
        boxes=[factory.new("vitron_ros_msgs/msg/PixelBox", x1=a, y1=b, x2=c, y2=d) for a, b, c, d in boxes],
    )
    assert error in outcome.error and outcome.masks.masks == []


def test_model_lock_serialises_queries_from_two_cameras(handlers, factory, scene, monkeypatch):
    """The handlers hold no lock over a query; the pipeline's model lock keeps two cameras' LLM runs apart."""
    calls, overlap = [], []
    llm = handlers.pipeline.llm
    real = llm.generate
    active = threading.Semaphore(1)

    def watched(*args, **kwargs):
        if not active.acquire(blocking=False):
            overlap.append(True)
        try:
            calls.append(1)
            return real(*args, **kwargs)
        finally:
            active.release()

    monkeypatch.setattr(llm, "generate", watched)
    threads = [
        threading.Thread(target=handlers.query, args=("describe", "", _image_msg(factory, scene))) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 3 and not overlap


def test_cropped_masks_cover_their_box_and_say_so(factory, tiny_pipeline, scene):
    """mask_format: cropped — each mask image is its box's pixels, equal to the full-frame mask there."""
    from vitron_ros.ros.image_conversions import image_to_numpy

    full, cropped = ({"front": CameraFrames("front")} for _ in range(2))
    outcomes = []
    for cameras, crop in ((full, False), (cropped, True)):
        handlers = VitronHandlers(factory, cameras, cropped_masks=crop)
        handlers.attach(tiny_pipeline)
        box = factory.new("vitron_ros_msgs/msg/PixelBox", x1=30.0, y1=20.0, x2=90.0, y2=70.0)
        outcomes.append(handlers.segment(image_msg=_image_msg(factory, scene), boxes=[box]))
    (whole,), (part,) = (o.masks.masks for o in outcomes)
    assert not whole.mask_cropped and (whole.mask.height, whole.mask.width) == scene.shape[:2]
    assert part.mask_cropped
    x1, y1, x2, y2 = (int(round(v)) for v in (part.box.x1, part.box.y1, part.box.x2, part.box.y2))
    assert (part.mask.height, part.mask.width) == (y2 - y1, x2 - x1)
    np.testing.assert_array_equal(image_to_numpy(part.mask), image_to_numpy(whole.mask)[y1:y2, x1:x2])
    assert image_to_numpy(whole.mask).sum() == image_to_numpy(part.mask).sum()  # nothing outside the box is lost
