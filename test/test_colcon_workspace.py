"""The README's colcon instructions, as written, in a fresh workspace: `colcon build --base-paths src/vitron_ros
src/vitron_ros/msg`, then `source install/setup.bash`, gives the node's executable, launch file, config and the
interfaces. The underlay is .venv (ROS 2 Kilted wheels plus vision_msgs, as scripts/setup_ros.sh built them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from test.conftest import tracked_copy
from test.ros_harness import REPO, require_ros

import pytest


@pytest.mark.slow
def test_readme_colcon_build_gives_a_sourceable_workspace_with_the_node_and_interfaces(tmp_path):
    require_ros()
    venv = Path(sys.prefix)
    colcon = venv / "bin" / "colcon"
    if not colcon.is_file():
        if os.environ.get("VITRON_REQUIRE_ROS"):
            pytest.fail(f"colcon is not installed in {venv}: scripts/setup_ros.sh installs it")
        pytest.skip("colcon is not installed: run scripts/setup_ros.sh")
    readme = (REPO / "README.md").read_text()
    command = "colcon build --base-paths src/vitron_ros src/vitron_ros/msg && source install/setup.bash"
    assert command in readme, "the README's workspace commands changed: update this test with them"

    workspace = tmp_path / "ros2_ws"
    tracked_copy(workspace / "src" / "vitron_ros")
    env = {**os.environ, "AMENT_PREFIX_PATH": str(venv), "CMAKE_PREFIX_PATH": str(venv),
           "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}  # fmt: skip
    script = f"""
        set -e
        cd {workspace}
        {command}
        python -c "import vitron_ros_msgs.action, vitron_ros.ros.node; print(vitron_ros_msgs.__file__)"
        echo "AMENT_PREFIX_PATH=$AMENT_PREFIX_PATH"
    """
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    install = workspace / "install"
    assert str(install / "vitron_ros_msgs") in done.stdout  # the workspace's own build is the one imported
    assert (install / "vitron_ros" / "lib" / "vitron_ros" / "vitron_node").is_file()  # `ros2 run vitron_ros vitron_node`
    share = install / "vitron_ros" / "share" / "vitron_ros"
    for path in ("launch/vitron.launch.py", "config/vitron.yaml", "config/vitron.rviz", "package.xml",
                 "models/shapes/sam.safetensors", "models/shapes/diffusion/model_index.json",
                 "models/shapes/diffusion/unet/diffusion_pytorch_model.safetensors"):  # fmt: skip
        assert (share / path).is_file(), path
    assert (install / "vitron_ros_msgs" / "share" / "vitron_ros_msgs" / "action" / "Track.action").is_file()
