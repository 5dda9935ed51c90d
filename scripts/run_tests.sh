#!/usr/bin/env bash
# The whole test suite, with its own set-up. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# ROS 2 (Kilted wheels pinned, or a sourced apt ROS 2) and the interface packages: the node tests run against the
# real node. A failed install or build stops the run, and tests that need rclpy fail instead of skipping.
bash scripts/setup_ros.sh
export VITRON_REQUIRE_ROS=1
# ROS 2's interface tooling validates msg/ (Debian ships it without rclpy). Where this script can install it (root
# with apt, as on CI) a failed install stops the run, so those tests never skip silently; elsewhere they skip.
if ! command -v rosidl > /dev/null && command -v apt-get > /dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing rosidl-tools (Debian) to validate the message definitions"
  if ! (apt-get update -qq && apt-get install -y -qq --no-install-recommends rosidl-tools python3-empy \
      python3-catkin-pkg) > .venv/apt-install.log 2>&1; then
    cat .venv/apt-install.log
    echo "rosidl-tools install failed"
    exit 1
  fi
fi
.venv/bin/python -m pytest -q "$@"
