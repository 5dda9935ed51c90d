#!/usr/bin/env bash
# Create .venv with everything vitron_ros and its tests need. Safe to re-run: pip skips what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# setup.py states ranges; constraints.txt pins the exact set CI runs (torch / torchvision included), so this venv is
# the tested one. -e keeps config/ next to the package for the CLI. The lab (ShapesWorld,
# training, evaluation, tiny builds; lab/) goes in too: the tests and the demo's eval need it, a robot does not.
echo "installing vitron_ros, the lab and their dependencies into .venv (the first run downloads torch: a few minutes)"
if ! .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off -q -c constraints.txt -e ".[test]" -e ./lab \
    > .venv/pip-install.log 2>&1; then
  cat .venv/pip-install.log
  exit 1
fi
