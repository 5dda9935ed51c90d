"""The running node under load and faults, from a second process: 100 lifecycle cycles under CPU load with frames
and requests arriving, and a fuzz of 10,000 malformed inputs through its topics and services."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time

import pytest

from test.ros_harness import CameraFeed, NodeProcess, Probe, image_msg, scene, wait_future, wait_until
from test.test_node_e2e import BASE, _state, _transition

CYCLES = 100
FUZZ_INPUTS = 10_000


@pytest.fixture(scope="module")
def probe(ros):
    probe = Probe("vitron_stress_probe")
    yield probe
    probe.close()


def _cpu_load():
    """One busy process per core: transitions race the executor hardest when threads are starved."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]


@pytest.mark.slow
def test_100_lifecycle_cycles_under_cpu_load_with_frames_and_requests_in_flight(ros, tiny_profile, probe, tmp_path):
    from vitron_ros_msgs.srv import Segment

    params = {**BASE, "autostart": False, "image_topics": ["/cycle/image"], "diagnostics_period_s": 0.05}
    process = NodeProcess(params, tmp_path / "node.log", namespace="/cycle")
    name = "/cycle/vitron"
    feed = CameraFeed(probe, {"cycle": "/cycle/image"}, rate_hz=30.0)
    stop = threading.Event()
    answers = {"ok": 0, "error": 0, "timeout": 0}

    def requests():  # a client hammering the segment service while it comes and goes
        from rclpy.qos import qos_profile_services_default

        client = probe.node.create_client(Segment, f"{name}/segment", qos_profile=qos_profile_services_default)
        while not stop.is_set():
            if not client.service_is_ready():
                time.sleep(0.02)
                continue
            try:
                response = wait_future(client.call_async(Segment.Request(everything=True)), 5)
                answers["error" if response.error else "ok"] += 1
            except TimeoutError:  # the service went away with the request: the client is never answered
                answers["timeout"] += 1

    load = _cpu_load()
    hammer = threading.Thread(target=requests, daemon=True)
    try:
        wait_until(lambda: _state(probe, name) == "unconfigured", 60, "the node")
        hammer.start()
        started = time.monotonic()
        for cycle in range(CYCLES):
            for transition in ("configure", "activate", "deactivate", "cleanup"):
                assert _transition(probe, name, transition), f"cycle {cycle}: {transition} failed\n{process.log()[-3000:]}"
            assert process.alive(), f"the node died in cycle {cycle}:\n{process.log()[-3000:]}"
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        hammer.join(timeout=10)
        feed.stop()
        for busy in load:
            busy.kill()
        code = process.stop()
    log = process.log()
    print(f"{CYCLES} cycles in {elapsed:.0f} s; segment answers during them: {answers}")
    assert code == 0, log[-3000:]
    for failure in ("InvalidHandle", "pointer is invalid", "context is invalid", "Segmentation fault"):
        assert failure not in log, log[-3000:]
    assert answers["ok"] + answers["error"] > 0


def _fuzz_images(rng: random.Random, count: int, width: int, height: int):
    """Malformed sensor_msgs/Image: unknown encodings, steps and sizes that disagree with the data, truncated and
    oversized data, absurd sizes. Every one must be refused by the decoder with a reason, none may stop the node."""
    from sensor_msgs.msg import Image

    encodings = ["rgb8", "bgr8", "mono8", "rgba8", "16UC1", "32FC1", "yuv422", "bayer_rggb8", "", "rgb8 ", "jpeg",
                 "8UC3", "RGB8", "nv12"]
    for i in range(count):
        encoding = rng.choice(encodings)
        h, w = rng.choice([(height, width), (0, 0), (1, 1), (height * 2, width), (2**31 - 1, 3), (5, 2**31 - 1)])
        msg = Image(height=h, width=w, encoding=encoding)
        msg.step = rng.choice([0, w, w * 3, w * 3 + 7, max(0, w * 3 - 1), 2**32 - 1]) % 2**32
        size = rng.choice([0, 1, 17, max(0, h * w * 3 - 1), 64 * 64 * 3])
        # never empty: an empty image means "no image, use the camera's frame" to Query and Segment
        msg.data = bytes(rng.getrandbits(8) for _ in range(min(max(size, 1), 64))) * max(1, min(size, 20_000) // 64)
        msg.is_bigendian = rng.random() < 0.1
        msg.header.frame_id = f"fuzz{i}"
        yield msg


def _corrupt(serialized: bytes, marker: bytes) -> bytes:
    """Serialized CDR with `marker` replaced by invalid UTF-8 of the same length (no Python client can send it)."""
    at = serialized.index(marker)
    return serialized[:at] + bytes([0xFF, 0xFE] * (len(marker) // 2)) + serialized[at + len(marker):]


@pytest.mark.slow
def test_fuzz_10000_malformed_inputs_never_kill_the_node_and_every_request_gets_a_reason(ros, tiny_profile, probe,
                                                                                        tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import String
    from vision_msgs.msg import BoundingBox2D, Point2D
    from vitron_ros_msgs.msg import PixelBox, PixelPoint
    from vitron_ros_msgs.srv import AddObjects, Query, RemoveObject, Segment

    rng = random.Random(1234)

    def node_counts():
        latest = {}
        for array in list(diagnostics)[-5:]:
            for status in array.status:
                if status.hardware_id in ("fuzz", "vitron"):
                    latest.update({f"{status.name}/{kv.key}": kv.value for kv in status.values})
        return latest

    params = {**BASE, "autostart": True, "image_topics": ["/fuzz/image"], "qos_depth": 200, "max_pending_queries": 64,
              "overlay": False, "diagnostics_period_s": 0.1}
    process = NodeProcess(params, tmp_path / "node.log", namespace="/fuzz")
    name = "/fuzz/vitron"
    diagnostics = probe.record(DiagnosticArray, "/diagnostics")
    reliable = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
    images = probe.node.create_publisher(Image, "/fuzz/image", reliable)
    queries = probe.node.create_publisher(String, f"{name}/query", reliable)
    counts = {"images": 0, "utf8": 0, "services": 0, "unanswered": 0}
    values: dict = {}
    topics_s = services_s = 0.0
    reasons: list[str] = []
    try:
        wait_until(lambda: _state(probe, name) == "active", 120, "the fuzz node to activate")
        wait_until(lambda: images.get_subscription_count() > 0, 10, "the node's image subscription")

        def has_frame():  # a real frame first: the stream has a size, so later ones can be wrong mid-stream
            images.publish(image_msg(scene(), "fuzz", 1))
            return not probe.call(Segment, f"{name}/segment", Segment.Request(everything=True)).error

        wait_until(has_frame, 30, "the first frame", period_s=0.2)
        probe.call(RemoveObject, f"{name}/remove_object", RemoveObject.Request(object_id="none"))  # steps the tracker

        started = time.monotonic()
        # 1. Topics: 6,000 malformed images, 500 images whose encoding is invalid UTF-8, 500 such queries.
        # Reliable delivery keeps only the last `depth` samples a slow reader has not taken: send in bursts smaller
        # than that and let the node catch up (its own count), so every input reaches it.
        def caught_up(sent: int) -> None:
            wait_until(lambda: int(node_counts().get("vitron: camera fuzz/frames_received", 0)) >= sent + 1, 30,
                       f"the node to take {sent} fuzz images", period_s=0.1)

        for msg in _fuzz_images(rng, 6_000, 200, 120):
            images.publish(msg)
            counts["images"] += 1
            if counts["images"] % 500 == 0:
                images.publish(image_msg(scene(60 + counts["images"] % 7, 90), "wrong_size", 2))  # size changes
                counts["images"] += 1
            if counts["images"] % 100 == 0:
                caught_up(counts["images"])
        image_bytes = serialize_message(image_msg(scene(4, 4), "utf", 3, encoding="rgb8"))
        string_bytes = serialize_message(String(data="segment the red mug please"))
        for i in range(500):
            images.publish(_corrupt(image_bytes, b"rgb8"))
            queries.publish(_corrupt(string_bytes, b"red mug "))
            counts["utf8"] += 2
            if i % 50 == 49:
                caught_up(counts["images"] + counts["utf8"] // 2)

        topics_s = time.monotonic() - started
        # 2. Services: 3,000 requests with bad coordinates, images, ids, cameras and texts, 16 at a time.
        def bad_query():
            kind = rng.randrange(6)
            if kind == 0:
                return Query.Request(request="what is this?", image=next(_fuzz_images(rng, 1, 200, 120)))
            if kind == 1:
                value = rng.choice([float("nan"), float("inf"), -1e30, 1e30, -5.0])
                return Query.Request(request="what is this?", points=[PixelPoint(x=value, y=value, label=1)])
            if kind == 2:
                return Query.Request(request="what?", boxes=[PixelBox(x1=50.0, y1=50.0, x2=10.0, y2=rng.random())])
            if kind == 3:
                return Query.Request(request=rng.choice(["", "   ", "\n\t"]))
            if kind == 4:
                return Query.Request(request="what?", camera=rng.choice(["nowhere", "x" * 300]))
            return Query.Request(request=("the red mug " * 834)[:10_000])  # 10,000 characters

        def bad_segment():
            value = rng.choice([float("nan"), -1.0, 1e9])
            return rng.choice([Segment.Request(), Segment.Request(points=[PixelPoint(x=value, y=2.0, label=1)]),
                               Segment.Request(points=[PixelPoint(x=3.0, y=3.0, label=7)]),
                               Segment.Request(boxes=[PixelBox(x1=value, y1=0.0, x2=5.0, y2=5.0)]),
                               Segment.Request(image=next(_fuzz_images(rng, 1, 200, 120)), everything=True)])

        def bad_add():
            box = BoundingBox2D(size_x=rng.choice([-3.0, 0.0, float("nan"), 5.0]), size_y=5.0)
            box.center.position.x = rng.choice([float("inf"), 1e12, -40.0])
            return rng.choice([AddObjects.Request(),
                               AddObjects.Request(bbox_coords=[box], bbox_object_ids=["a"]),
                               AddObjects.Request(bbox_coords=[box], bbox_object_ids=[]),
                               AddObjects.Request(point_coords=[Point2D(x=float("nan"), y=1.0)], point_object_ids=["p"],
                                                  point_labels=[1]),
                               AddObjects.Request(requests=[""], request_object_ids=["r"]),
                               AddObjects.Request(requests=["the mug"], camera="nowhere")])

        calls = [(Query, "query", bad_query, lambda r: r.answer.error),
                 (Segment, "segment", bad_segment, lambda r: r.error),
                 (AddObjects, "add_objects", bad_add, lambda r: "" if r.success else r.message),
                 (RemoveObject, "remove_object", lambda: RemoveObject.Request(object_id=f"ghost{rng.randrange(99)}"),
                  lambda r: "" if r.success else r.message)]  # fmt: skip
        clients = {service: probe.node.create_client(kind, f"{name}/{service}") for kind, service, *_ in calls}
        for client in clients.values():
            assert client.wait_for_service(timeout_sec=30)
        remaining = FUZZ_INPUTS - counts["images"] - counts["utf8"]

        while remaining > 0:
            batch = []
            for _ in range(min(16, remaining)):
                kind, service, make, reason = rng.choice(calls)
                request = make()
                batch.append((service, reason, clients[service].call_async(request), request))
            for service, reason, future, request in batch:
                try:
                    response = wait_future(future, 30, service)
                except TimeoutError:
                    counts["unanswered"] += 1
                    continue
                text = reason(response)
                assert text, f"a malformed {service} request was answered without an error: {request} -> {response}"
                reasons.append(text)
            counts["services"] += len(batch)
            remaining -= len(batch)

        services_s = time.monotonic() - started - topics_s
        assert process.alive(), process.log()[-3000:]
        total = counts["images"] + counts["utf8"] + counts["services"]
        assert total >= FUZZ_INPUTS and counts["unanswered"] == 0, counts

        # the node counted what it refused: conversion errors, contained unreadable messages, failed requests
        def counted():
            values = node_counts()
            conversions = int(values.get("vitron: camera fuzz/conversion_errors", 0))
            failed = int(values.get("vitron: node/requests_failed", 0))
            received = int(values.get("vitron: camera fuzz/frames_received", 0))
            # rclpy reads invalid UTF-8 with replacement characters: those images fail on their encoding, those
            # queries are answered or refused like any other; none of them is lost or ends anything
            images_sent = counts["images"] + counts["utf8"] // 2
            done = received >= images_sent and failed >= counts["services"]
            return values if done and conversions >= 0.95 * images_sent else None

        try:
            values = wait_until(counted, 60, "the node's counts in /diagnostics", period_s=0.5)
        except AssertionError as error:
            raise AssertionError(f"{error}; sent {counts}; the node said {node_counts()}") from None
        # the node still works after it all
        answer = probe.call(Query, f"{name}/query", Query.Request(request="what is this?", image=image_msg(scene(), "ok", 5)))
        assert answer.answer.error == "", answer.answer.error
    finally:
        code = process.stop()
    log = process.log()
    assert int(values.get("vitron: node/callback_errors", 1)) == 0, log[-3000:]  # every bad input had a clear path
    print(f"fuzz: {counts}; node counts: conversion_errors={values.get('vitron: camera fuzz/conversion_errors')}, "
          f"contained={values.get('vitron: node/callback_errors')}, requests_failed={values.get('vitron: node/requests_failed')}")
    print(f"topics {topics_s:.0f} s, services {services_s:.0f} s; distinct reasons: {len(set(r[:60] for r in reasons))}")
    assert code == 0, log[-3000:]
