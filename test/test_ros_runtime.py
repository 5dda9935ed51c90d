"""The node's runtime parts without rclpy: frame buffers, per-camera workers, diagnostics, parameters."""

import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from vitron_ros.core.errors import VitronInputError
from vitron_ros.ros.diagnostics import (
    OK,
    WARN,
    LatencyWindow,
    diagnostics_msg,
    runtime_status,
)
from vitron_ros.ros.frame_buffer import CameraFrames
from vitron_ros.ros.image_conversions import numpy_to_image, rgb_to_compressed
from vitron_ros.ros.interfaces import TypestoreFactory, header, typestore
from vitron_ros.ros.parameters import NodeParameters, camera_info_topic, camera_name_for
from vitron_ros.ros.query_worker import CameraBusyError, QueryWorker

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def factory():
    return TypestoreFactory()


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _frame(factory, value, stamp=0):
    return numpy_to_image(np.full((4, 6, 3), value, np.uint8), "rgb8", factory, header(factory, stamp, "cam"))


def test_latest_wins_and_the_ring_keeps_recent_frames_in_order(factory):
    frames = CameraFrames("cam", ring_length=3)
    for value in range(5):
        assert frames.add_image(_frame(factory, value, stamp=value))
    assert frames.latest().rgb[0, 0, 0] == 4
    assert [f.rgb[0, 0, 0] for f in frames.recent()] == [2, 3, 4]
    assert [f.rgb[0, 0, 0] for f in frames.recent(2)] == [3, 4]
    assert frames.stats().received == 5


def test_rate_limit_drops_frames_before_decoding_and_rate_is_measured(factory):
    clock = FakeClock()
    frames = CameraFrames("cam", max_rate_hz=10.0, clock=clock)
    kept = []
    for _ in range(30):  # 30 frames at 30 Hz for one second
        kept.append(frames.add_image(_frame(factory, 1)))
        clock.now += 1 / 30
    stats = frames.stats()
    assert sum(kept) == 10 and stats.dropped_rate_limit == 20
    assert stats.input_rate_hz == pytest.approx(30.0, rel=1e-6)


def test_undecodable_frames_are_counted_not_raised(factory):
    frames = CameraFrames("cam")
    bad = _frame(factory, 1)
    bad.step = 7  # shorter than a row
    assert not frames.add_image(bad)
    broken = factory.new("sensor_msgs/msg/CompressedImage", format="jpeg", data=np.arange(9, dtype=np.uint8))
    assert not frames.add_compressed(broken)
    good = rgb_to_compressed(np.zeros((8, 8, 3), np.uint8), factory, "png", header(factory, 5, "cam"))
    assert frames.add_compressed(good)
    stats = frames.stats()
    assert stats.conversion_errors == 2 and "cannot decode compressed image" in stats.last_error
    assert frames.latest().rgb.shape == (8, 8, 3)


def test_worker_runs_one_query_at_a_time_and_refuses_beyond_its_queue():
    worker = QueryWorker("front", max_pending=1)
    release, running, overlap = threading.Event(), threading.Semaphore(1), []

    def job():
        if not running.acquire(blocking=False):
            overlap.append(True)
        release.wait(5)
        running.release()
        return "done"

    first, second = worker.submit(job), worker.submit(job)
    with pytest.raises(CameraBusyError, match="camera 'front' is busy: one query running and 1 waiting"):
        worker.submit(job)
    release.set()
    assert first.result(5) == second.result(5) == "done"
    assert not overlap and worker.refused == 1
    assert worker.submit(lambda: 7).result(5) == 7  # room again once answered
    worker.shutdown()


def test_diagnostics_report_latency_rates_errors_and_memory(factory, tiny_pipeline):
    latency = LatencyWindow()
    for total in (0.010, 0.020, 0.030):
        latency.add({"total": total, "llm_generate": total / 2})
    summary = latency.summary()
    assert summary["total"][0] == pytest.approx(20.0)
    runtime = runtime_status(tiny_pipeline)
    memory = tiny_pipeline.memory_bytes()
    params = sum(p.numel() * p.element_size() for p in tiny_pipeline.llm.model.parameters())
    tracker = tiny_pipeline.specialists["tracker"].model
    tracker_bytes = sum(p.numel() * p.element_size() for p in tracker.parameters())
    assert memory > params + tracker_bytes and tracker_bytes > 0  # the SAM 2 tracker is counted too
    assert float(runtime["model_memory_mb"]) == pytest.approx(memory / 2**20, abs=0.1)
    assert runtime["segmenter.sam_image_encoder_backend"].startswith("torch")
    assert runtime["llm.clip_vision_backend"].startswith("torch") and runtime["activity"] == "idle"
    frames = CameraFrames("front")
    bad = _frame(factory, 1)
    bad.encoding = "bayer_rggb8"
    frames.add_image(bad)
    msg = diagnostics_msg(
        factory, header(factory, 9), "vitron", {"front": frames.stats(), "rear": CameraFrames("rear").stats()},
        summary, runtime, True, {"front": 3},
    )  # fmt: skip
    store = typestore()
    msg = store.deserialize_cdr(store.serialize_cdr(msg, "diagnostic_msgs/msg/DiagnosticArray"), "diagnostic_msgs/msg/DiagnosticArray")
    models, front, rear = msg.status
    values = {kv.key: kv.value for kv in models.values}
    assert models.level == OK and values["total_ms_median"] == "20.00" and float(values["model_memory_mb"]) > 0
    front_values = {kv.key: kv.value for kv in front.values}
    assert front.level == WARN and "unsupported image encoding 'bayer_rggb8'" in front.message
    assert front_values["conversion_errors"] == "1" and front_values["queries_refused_busy"] == "3"
    assert rear.level == WARN and rear.message == "no frames received"


def test_shipped_params_file_sets_only_declared_parameters():
    raw = yaml.safe_load((REPO / "config" / "vitron.yaml").read_text())
    values = raw["/**"]["ros__parameters"]
    params = NodeParameters.from_dict(values)
    assert set(values) == set(NodeParameters.descriptions())  # every parameter shown, with its default or choice
    assert params.reliability == "best_effort" and params.qos_depth == 1


@pytest.mark.parametrize(
    "values,message",
    [
        ({"reliability": "fast"}, "parameter reliability='fast'"),
        ({"transport": "theora"}, "parameter transport='theora'"),
        ({"qos_depth": 0}, "parameter qos_depth=0"),
        ({"image_topics": []}, "parameter image_topics=[]"),
        ({"image_topics": ["a/image", "b/image"], "camera_names": ["x"]}, "parameter camera_names"),
        ({"max_rate_hz": "fast"}, "parameter max_rate_hz: expected float, got str"),
        ({"camera_info": 1}, "parameter camera_info: expected bool"),
        ({"cameras": 2}, "unknown parameter(s) ['cameras']"),
    ],
)
def test_bad_parameters_are_refused_by_name(values, message):
    with pytest.raises(VitronInputError) as error:
        NodeParameters.from_dict(values)
    assert message in str(error.value)


def test_camera_names_follow_topic_namespaces():
    params = NodeParameters.from_dict({"image_topics": ["front/image_raw", "rear/image_raw"], "max_rate_hz": 5})
    assert params.cameras == {"front": "front/image_raw", "rear": "rear/image_raw"}
    assert params.max_rate_hz == 5.0
    assert camera_name_for("image") == "image" and camera_info_topic("image") == "camera_info"
    assert camera_info_topic("/front/image_raw") == "/front/camera_info"


def test_camera_info_that_does_not_match_the_images_is_a_warning(factory):
    from vitron_ros.ros.diagnostics import camera_info_summary

    info = factory.new("sensor_msgs/msg/CameraInfo", width=640, height=480, header=header(factory, 0, "front"))
    assert camera_info_summary(info, (480, 640)) == (OK, "640x480, frame 'front'")
    assert camera_info_summary(info, (240, 320)) == (WARN, "camera_info is 640x480 but images are 320x240")
    assert camera_info_summary(None, None)[0] == WARN
    frames = CameraFrames("front")
    frames.add_image(_frame(factory, 1))
    msg = diagnostics_msg(
        factory, header(factory, 1), "vitron", {"front": frames.stats()}, {}, {}, False, {},
        {"front": camera_info_summary(info, (4, 6))},
    )  # fmt: skip
    models, front = msg.status
    assert models.level == WARN and front.level == WARN and "camera_info is 640x480" in front.message
    # while activate loads, the model status says what it is doing (an engine build takes minutes)
    building = runtime_status(None, "building engine for unet (float16): no cached engine")
    msg = diagnostics_msg(factory, header(factory, 2), "vitron", {}, {}, building, False, {})
    assert msg.status[0].level == OK and msg.status[0].message == (
        "loading models: building engine for unet (float16): no cached engine")
    failed = {"activity": "idle", "editor_load_error": "the editor could not be loaded: OutOfMemoryError: CUDA out"}
    msg = diagnostics_msg(factory, header(factory, 3), "vitron", {}, {}, failed, True, {})
    assert msg.status[0].level == WARN and msg.status[0].message.startswith("the editor could not be loaded")
