"""Test harness for the running node: vitron_node in its own process, probed from this one over real DDS.

Traffic stays on this machine: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (ROS_LOCALHOST_ONLY=1 for older
distributions) and a ROS_DOMAIN_ID of this test run's own, so parallel runs never cross.
Where scripts/run_tests.sh installed ROS 2 (VITRON_REQUIRE_ROS=1, as in CI) a missing rclpy is a failure, not a skip.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def require_ros():
    """Import rclpy and the interfaces, or skip (fail where ROS 2 was installed for this run)."""
    if os.environ.get("VITRON_REQUIRE_ROS"):
        import rclpy  # noqa: F401 - an ImportError here fails the test: the run installed ROS 2
        import vision_msgs.msg  # noqa: F401
        import vitron_ros_msgs.msg  # noqa: F401

        return rclpy
    rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed: run scripts/setup_ros.sh")
    pytest.importorskip("vitron_ros_msgs.msg", reason="vitron_ros_msgs is not built: run scripts/setup_ros.sh")
    pytest.importorskip("vision_msgs.msg", reason="vision_msgs is not built: run scripts/setup_ros.sh")
    return rclpy


def loopback_env(domain_id: int) -> dict[str, str]:
    return {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_LOCALHOST_ONLY": "1", "ROS_DOMAIN_ID": str(domain_id),
            "RMW_IMPLEMENTATION": os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")}


def run_domain_id() -> int:
    """A domain id for this test run (1-100), from the process id, so two runs at once do not cross."""
    return 1 + os.getpid() % 100


class NodeProcess:
    """vitron_node in a subprocess with `params` (name -> value) as --ros-args, its log in `log_path`."""

    def __init__(self, params: dict, log_path: Path, namespace: str = "", extra_args: tuple[str, ...] = (),
                 env: dict | None = None):
        args = [sys.executable, "-m", "vitron_ros.ros.node", "--ros-args"]
        for name, value in params.items():
            args += ["-p", f"{name}:={_ros_value(value)}"]
        if namespace:
            args += ["-r", f"__ns:={namespace}"]
        args += list(extra_args)
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO,
                                        env={**os.environ, **(env or {})})

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGINT, as Ctrl-C: the node tears itself down in order; returns its exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def _ros_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(f"'{v}'" for v in value) + "]"
    return str(value)


class Probe:
    """A node in this process with its own spinning thread: calls services and actions, records topics."""

    def __init__(self, name: str = "vitron_probe"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.node = rclpy.create_node(name)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self.clients: dict[str, object] = {}

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()

    def record(self, msg_type, topic: str, qos=10) -> list:
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def call(self, srv_type, name: str, request, timeout_s: float = 60.0):
        client = self.clients.get(name)
        if client is None:
            client = self.clients[name] = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise TimeoutError(f"service {name} not available within {timeout_s} s")
        return wait_future(client.call_async(request), timeout_s, f"{name}")


def wait_future(future, timeout_s: float, what: str = "future"):
    deadline = time.monotonic() + timeout_s
    while not future.done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: no answer within {timeout_s} s")
        time.sleep(0.01)
    return future.result()


def wait_until(predicate, timeout_s: float, what: str, period_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def image_msg(rgb: np.ndarray, frame_id: str, stamp_ns: int, encoding: str = "rgb8"):
    from sensor_msgs.msg import Image

    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, step=rgb.shape[1] * rgb.shape[2])
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 10**9)
    msg.data = rgb.tobytes()
    return msg


def scene(height: int = 120, width: int = 200, shift: int = 0) -> np.ndarray:
    rgb = np.full((height, width, 3), 200, np.uint8)
    rgb[20:70, 30 + shift : 90 + shift] = (220, 30, 30)
    rgb[60:110, 120:180] = (30, 30, 220)
    return rgb


DEPTH_FX = 100.0  # the test camera: fx = fy, principal point at the image centre


def scene_depth_mm(rgb: np.ndarray) -> np.ndarray:
    """Aligned depth for `scene()`: a wall at 1.5 m, the red rectangle at 1.0 m, the blue one at 1.2 m (16UC1)."""
    depth = np.full(rgb.shape[:2], 1500, np.uint16)
    depth[(rgb == (220, 30, 30)).all(-1)] = 1000
    depth[(rgb == (30, 30, 220)).all(-1)] = 1200
    return depth


def depth_msg(depth: np.ndarray, frame_id: str, stamp_ns: int):
    from sensor_msgs.msg import Image

    msg = Image(height=depth.shape[0], width=depth.shape[1], encoding="16UC1", step=depth.shape[1] * 2)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 10**9)
    msg.data = depth.astype("<u2").tobytes()
    return msg


def camera_info_msg(image_hw, frame_id: str, stamp_ns: int):
    from sensor_msgs.msg import CameraInfo

    height, width = image_hw
    msg = CameraInfo(height=height, width=width, distortion_model="plumb_bob", d=[0.0] * 5)
    msg.k = [DEPTH_FX, 0.0, (width - 1) / 2, 0.0, DEPTH_FX, (height - 1) / 2, 0.0, 0.0, 1.0]
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 10**9)
    return msg


def stamp_of(header) -> int:
    return int(header.stamp.sec) * 10**9 + int(header.stamp.nanosec)


class CameraFeed:
    """Publishes `frames()` on image topics at `rate_hz` from a thread, each frame stamped and counted."""

    def __init__(self, probe: Probe, topics: dict[str, str], rate_hz: float = 15.0, compressed: bool = False,
                 qos=None, make_frame=None, depth: dict[str, str] | None = None):
        """`depth`: frame_id -> aligned depth topic; each colour frame is followed by its depth (16UC1, the same
        stamp, `scene_depth_mm`) and the depth's camera_info (`camera_info_msg`)."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image

        qos = qos or QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        msg_type = CompressedImage if compressed else Image
        self.publishers = {frame_id: probe.node.create_publisher(msg_type, topic, qos) for frame_id, topic in topics.items()}
        from sensor_msgs.msg import CameraInfo

        self.depth = {frame_id: (probe.node.create_publisher(Image, topic, qos),
                                 probe.node.create_publisher(CameraInfo, topic.rsplit("/", 1)[0] + "/camera_info", qos))
                      for frame_id, topic in (depth or {}).items()}  # fmt: skip
        self.compressed = compressed
        self.rate_hz = rate_hz
        self.make_frame = make_frame or (lambda i: scene(shift=i % 20))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import cv2
        from sensor_msgs.msg import CompressedImage

        i = 0
        while not self._stop.is_set():
            rgb = self.make_frame(i)
            for frame_id, publisher in self.publishers.items():
                stamp = time.time_ns()
                if self.compressed:
                    msg = CompressedImage(format="jpeg")
                    msg.header.frame_id = frame_id
                    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
                    msg.data = cv2.imencode(".jpg", rgb[..., ::-1])[1].tobytes()
                else:
                    msg = image_msg(rgb, frame_id, stamp)
                publisher.publish(msg)
                if frame_id in self.depth:
                    depth_publisher, info_publisher = self.depth[frame_id]
                    depth_publisher.publish(depth_msg(scene_depth_mm(rgb), frame_id, stamp))
                    info_publisher.publish(camera_info_msg(rgb.shape[:2], frame_id, stamp))
            i += 1
            self._stop.wait(1.0 / self.rate_hz)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
