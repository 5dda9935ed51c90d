#!/usr/bin/env bash
# The main job, offline: a query with the random-weight `tiny` profile on the image kept in the repo.
# Prints the answer and writes demo_out/overlay.png and demo_out/result.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export VITRON_CACHE=${VITRON_CACHE:-$PWD/.venv/vitron_cache}
.venv/bin/vitron query assets/demo_scene.png "what is this object?" --box 40,60,150,170 \
  --profile tiny --out demo_out "$@"
