#!/usr/bin/env bash
# The main job, offline, on the shipped `shapes` profile (the tiny VITRON trained on ShapesWorld): a referring
# segmentation request and a question about assets/shapes_scene.png, a held-out ShapesWorld scene with two blue
# squares (the relation decides which one), then the tracker following that square through a clip.
# Prints the answers and masks and writes demo_out/overlay.png, demo_out/result.json (and demo_out/question/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export VITRON_CACHE=${VITRON_CACHE:-$PWD/.venv/vitron_cache}
.venv/bin/vitron query assets/shapes_scene.png "segment the blue square left of the yellow circle." \
  --profile shapes --out demo_out "$@"
.venv/bin/vitron query assets/shapes_scene.png "how many objects are there?" \
  --profile shapes --out demo_out/question "$@"
