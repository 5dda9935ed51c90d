#!/usr/bin/env bash
# The whole test suite, with its own set-up. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# ROS 2's interface tooling validates msg/ (Debian ships it without rclpy). Without it those tests skip, except
# under .ci/run (VITRON_STRICT_CI=1), where a missing rosidl fails them.
if ! command -v rosidl > /dev/null && command -v apt-get > /dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing rosidl-tools (Debian) to validate the message definitions"
  (apt-get update -qq && apt-get install -y -qq --no-install-recommends rosidl-tools python3-empy python3-catkin-pkg) \
    > .venv/apt-install.log 2>&1 || { cat .venv/apt-install.log; echo "rosidl-tools install failed"; }
fi
.venv/bin/python -m pytest -q "$@"
