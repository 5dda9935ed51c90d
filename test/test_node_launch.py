"""launch_testing: vitron_node on a recorded bag publishes ~/masks. Runs only where ROS 2 is installed.

    launch_test test/test_node_launch.py      # or: colcon test --packages-select vitron_ros
"""

import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed here; the node launch test needs it")
launch_testing = pytest.importorskip("launch_testing", reason="launch_testing is not installed")

import tempfile  # noqa: E402
import time  # noqa: E402
import unittest  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import ExecuteProcess  # noqa: E402
from launch_ros.actions import LifecycleNode  # noqa: E402

from vitron_ros.ros.replay import write_image_bag  # noqa: E402

BAG = Path(tempfile.mkdtemp()) / "camera_bag"


@pytest.mark.launch_test
def generate_test_description():
    scene = np.full((120, 200, 3), 200, np.uint8)
    scene[20:70, 30:90] = (220, 30, 30)
    write_image_bag(BAG, [scene] * 20, topic="/camera/image", frame_id="camera", storage="mcap")
    node = LifecycleNode(
        package="vitron_ros", executable="vitron_node", name="vitron", namespace="",
        parameters=[{"profile": "tiny", "device": "cpu", "autostart": True, "image_topics": ["camera/image"],
                     "reliability": "reliable"}],
    )  # fmt: skip
    play = ExecuteProcess(cmd=["ros2", "bag", "play", str(BAG), "--loop"], output="screen")
    return LaunchDescription([node, play, launch_testing.actions.ReadyToTest()])


class TestMasksArrive(unittest.TestCase):
    def test_query_on_live_frames_publishes_masks_with_the_camera_header(self):
        from std_msgs.msg import String
        from vitron_ros_msgs.msg import GroundedMaskArray

        rclpy.init()
        probe = rclpy.create_node("vitron_probe")
        received = []
        probe.create_subscription(GroundedMaskArray, "/vitron/masks", received.append, 10)
        ask = probe.create_publisher(String, "/vitron/query", 10)
        deadline = time.monotonic() + 120  # model build and activation included
        while not received and time.monotonic() < deadline:
            ask.publish(String(data="segment the red square"))
            rclpy.spin_once(probe, timeout_sec=1.0)
        probe.destroy_node()
        rclpy.shutdown()
        assert received, "no GroundedMaskArray on /vitron/masks within 120 s"
        assert received[0].header.frame_id == "camera"
