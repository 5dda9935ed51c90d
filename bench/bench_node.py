"""The real vitron_node under a live camera: latency, frame accounting, memory, bandwidth and the ROS layer's share.

    .venv/bin/python bench/bench_node.py [--sizes 1280x720,1920x1080] [--seconds 120] [--rate 30] [--profile tiny]

For each frame size: vitron_node (its own process, `--profile`, CPU) gets rgb8 frames at `--rate` Hz on
/bench/image, tracks two objects (AddObjects boxes) and answers a Query every second, for `--seconds`. Printed:
- end-to-end latency from a frame's stamp (set when it is published) to its ~/tracks message arriving here;
- frames published here, received / tracked / skipped (latest wins) as the node counts them in /diagnostics;
- node RSS at the start (active, objects added) and at the end;
- bytes per second the node publishes, per topic (every output subscribed, sizes of the serialized messages);
- the ROS share of per-frame cost: (conversion in + message build + publish) / whole per-frame time, medians over
  the node's last 300 tracked frames.
DDS traffic stays on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) in a domain id of this run's own.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = ["tracks", "tracks_overlay", "answer", "masks", "detections", "overlay"]  # no depth here: no 3D topics


def frames_for(width: int, height: int, count: int = 30) -> list[np.ndarray]:
    """Two shapes moving across a textured background."""
    yy, xx = np.mgrid[0:height, 0:width]
    background = (((xx // 40 + yy // 40) % 2) * 40 + 150).astype(np.uint8)
    frames = []
    for i in range(count):
        rgb = np.repeat(background[..., None], 3, axis=2)
        x = int(width * (0.2 + 0.3 * i / count))
        rgb[height // 4 : height // 2, x : x + width // 6] = (220, 30, 30)
        rgb[height // 2 : 3 * height // 4, width // 2 : width // 2 + width // 6] = (30, 30, 220)
        frames.append(rgb)
    return frames


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_size(width: int, height: int, args, probe_node) -> dict:
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image
    from vision_msgs.msg import BoundingBox2D
    from vitron_ros_msgs.msg import TrackedObjectArray
    from vitron_ros_msgs.srv import AddObjects, Query

    ns = f"/bench{width}"
    log = open(Path(args.log_dir) / f"node_{width}x{height}.log", "w")
    node = subprocess.Popen(
        [sys.executable, "-m", "vitron_ros.ros.node", "--ros-args", "-r", f"__ns:={ns}", "-p", f"profile:={args.profile}",
         "-p", "device:=cpu", "-p", "autostart:=true", "-p", "image_topics:=['/bench/image']",
         "-p", f"reliability:={args.reliability}", "-p", "diagnostics_period_s:=0.2", "-p", "camera_info:=false",
         "-p", f"mask_format:={args.mask_format}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
    )  # fmt: skip
    name = f"{ns}/vitron"
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE if args.reliability == "reliable"
                     else ReliabilityPolicy.BEST_EFFORT)  # fmt: skip
    publisher = probe_node.create_publisher(Image, "/bench/image", qos)
    sizes: dict[str, int] = defaultdict(int)
    latencies: list[float] = []
    diagnostics: list = []
    measuring = threading.Event()

    def on_output(topic):
        def callback(raw: bytes):
            now = time.time_ns()
            if not measuring.is_set():
                return
            sizes[topic] += len(raw)
            if topic == "tracks":
                msg = deserialize_message(raw, TrackedObjectArray)
                latencies.append((now - (msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)) / 1e6)
        return callback

    subscriptions = [probe_node.create_subscription(_type_of(t), f"{name}/{t}", on_output(t), 10, raw=True)
                     for t in OUTPUTS]  # fmt: skip
    subscriptions.append(probe_node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10))
    add = probe_node.create_client(AddObjects, f"{name}/add_objects")
    query = probe_node.create_client(Query, f"{name}/query")
    frames = frames_for(width, height)
    template = [Image(height=height, width=width, encoding="rgb8", step=width * 3, data=f.tobytes()) for f in frames]
    stop = threading.Event()
    published = {"count": 0}

    def camera():
        period = 1.0 / args.rate
        due = time.monotonic()
        i = 0
        while not stop.is_set():
            msg = template[i % len(template)]
            msg.header.frame_id = "bench_camera"
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 10**9)
            publisher.publish(msg)
            if measuring.is_set():
                published["count"] += 1
            i += 1
            due += period
            time.sleep(max(0.0, due - time.monotonic()))

    thread = threading.Thread(target=camera, daemon=True)
    answers = {"ok": 0, "error": 0}
    try:
        thread.start()
        _wait(lambda: add.wait_for_service(timeout_sec=0.5) and _camera_values(diagnostics), 180, "node ready")
        _wait(lambda: _models_loaded(diagnostics), 180, "models loaded")
        request = AddObjects.Request(bbox_coords=[_box(BoundingBox2D, width * 0.2, height / 4, width / 6, height / 4),
                                                  _box(BoundingBox2D, width / 2, height / 2, width / 6, height / 4)],
                                     bbox_object_ids=["red", "blue"])  # fmt: skip
        response = _result(add.call_async(request), 30)
        assert response.success, response.message
        time.sleep(3.0)  # tracking under way
        start_rss = rss_mb(node.pid)
        seen = len(diagnostics)
        _wait(lambda: len(diagnostics) > seen, 10, "fresh diagnostics")
        before = _camera_values(diagnostics)
        measuring.set()  # within one diagnostics period (0.2 s) of the node's count: a few frames at most
        started = time.monotonic()
        pending = None
        while time.monotonic() - started < args.seconds:
            if pending is None or pending.done():
                if pending is not None:
                    answers["error" if pending.result().answer.error else "ok"] += 1
                pending = query.call_async(Query.Request(request="what is the red object?"))
            time.sleep(1.0)
        measuring.clear()
        stop.set()  # the camera stops with the measurement, so the node's counts end where the publisher's do
        elapsed = time.monotonic() - started
        time.sleep(2.5)  # the last frames drain and the node's diagnostics catch up
        after = _camera_values(diagnostics)
        end_rss = rss_mb(node.pid)
    finally:
        stop.set()
        thread.join(timeout=5)
        node.send_signal(signal.SIGINT)
        node.wait(timeout=60)
        log.close()
        for sub in subscriptions:
            probe_node.destroy_subscription(sub)
        probe_node.destroy_publisher(publisher)
        probe_node.destroy_client(add)
        probe_node.destroy_client(query)
    delta = {k: int(after[k]) - int(before[k]) for k in ("frames_received", "frames_tracked", "frames_skipped_latest_wins",
                                                          "tracking_published_image_bytes")}  # fmt: skip
    lat = np.asarray(latencies) if latencies else np.asarray([np.nan])
    return {
        "size": f"{width}x{height}", "seconds": elapsed, "published": published["count"],
        "received": delta["frames_received"], "tracked": delta["frames_tracked"],
        "skipped": delta["frames_skipped_latest_wins"], "tracks_received": len(latencies),
        "latency_median_ms": float(np.median(lat)), "latency_p95_ms": float(np.percentile(lat, 95)),
        "rss_start_mb": start_rss, "rss_end_mb": end_rss,
        "bytes_per_s": {t: sizes[t] / elapsed for t in OUTPUTS},
        "frame_ms": float(after["tracking_frame_ms_median"]), "ros_ms": float(after["tracking_ros_ms_median"]),
        "mask_bytes": width * height, "answers": answers, "exit_code": node.returncode,
    }  # fmt: skip


def _type_of(topic: str):
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray
    from vitron_ros_msgs.msg import Answer, GroundedMaskArray, TrackedObjectArray

    return {"tracks": TrackedObjectArray, "tracks_overlay": Image, "answer": Answer, "masks": GroundedMaskArray,
            "detections": Detection2DArray, "overlay": Image}[topic]


def _box(kind, cx, cy, w, h):
    box = kind(size_x=float(w), size_y=float(h))
    box.center.position.x, box.center.position.y = float(cx), float(cy)
    return box


def _camera_values(diagnostics) -> dict | None:
    for array in reversed(list(diagnostics)):
        for status in array.status:
            if status.name == "vitron: camera bench" and status.hardware_id == "bench":
                values = {kv.key: kv.value for kv in status.values}
                if "frames_tracked" in values:
                    return values
    return None


def _models_loaded(diagnostics) -> bool:
    return any(s.name == "vitron: models" and s.message == "models loaded" for a in list(diagnostics)[-3:] for s in a.status)


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def _result(future, timeout_s: float):
    _wait(future.done, timeout_s, "a service answer")
    return future.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1280x720,1920x1080")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--reliability", default="best_effort", choices=("best_effort", "reliable"))
    parser.add_argument("--log-dir", default="/tmp")
    parser.add_argument("--mask-format", default="full", choices=("full", "cropped"))
    parser.add_argument("--large-frames", action="store_true",
                        help="both processes use config/fastdds_large_frames.xml (a shared-memory segment that fits a frame)")
    args = parser.parse_args()
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    if args.large_frames:  # before rclpy starts: this process is the camera, the writer whose segment carries frames
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds_large_frames.xml")
    os.environ.update({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                       "ROS_DOMAIN_ID": str(101 + os.getpid() % 100)})  # fmt: skip
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    rclpy.init()
    probe = rclpy.create_node("vitron_bench")
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(probe)
    spinning = threading.Thread(target=executor.spin, daemon=True)
    spinning.start()
    results = []
    try:
        for size in args.sizes.split(","):
            width, height = (int(v) for v in size.lower().split("x"))
            print(f"{size}: {args.seconds:.0f} s at {args.rate:g} Hz, 2 objects tracked, a query every second ...",
                  flush=True)
            results.append(run_size(width, height, args, probe))
    finally:
        executor.shutdown()
        spinning.join(timeout=10)
        probe.destroy_node()
        rclpy.try_shutdown()
    for r in results:
        total = sum(r["bytes_per_s"].values())
        dds = "fastdds_large_frames.xml" if args.large_frames else "Fast DDS defaults"
        print(f"\n== {r['size']} rgb8, {r['seconds']:.0f} s, profile {args.profile}, {args.reliability}, "
              f"masks {args.mask_format}, {dds} ==")
        print(f"latency stamp -> ~/tracks received: median {r['latency_median_ms']:.1f} ms, "
              f"p95 {r['latency_p95_ms']:.1f} ms ({r['tracks_received']} messages)")
        print(f"frames: published {r['published']}, node received {r['received']}, tracked {r['tracked']}, "
              f"skipped (latest wins) {r['skipped']}; received - tracked - skipped = "
              f"{r['received'] - r['tracked'] - r['skipped']}; published - received = {r['published'] - r['received']} "
              "(the node's counts are read from /diagnostics every 0.2 s)")
        print(f"node RSS: {r['rss_start_mb']:.0f} MB at start, {r['rss_end_mb']:.0f} MB at end")
        print(f"node publishes {total / 1e6:.2f} MB/s: " +
              ", ".join(f"{t} {v / 1e6:.2f}" for t, v in r["bytes_per_s"].items() if v))
        print(f"per tracked frame (node medians): {r['frame_ms']:.1f} ms, of which ROS (conversion in + message "
              f"build + publish) {r['ros_ms']:.1f} ms = {r['ros_ms'] / max(r['frame_ms'], 1e-9):.0%}")
        print(f"a full-frame mono8 mask is {r['mask_bytes'] / 1e6:.2f} MB; queries answered {r['answers']}; "
              f"node exit code {r['exit_code']}")


if __name__ == "__main__":
    main()
