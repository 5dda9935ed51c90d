#!/usr/bin/env bash
# The main job, offline, on the shipped `shapes` profile (the tiny VITRON trained on ShapesWorld): a referring
# segmentation request and a question about assets/shapes_scene.png, a held-out ShapesWorld scene with two yellow
# triangles (the relation decides which one; scene and requests were fixed before the model was trained); an edit
# of that scene; then a held-out clip streamed through the
# tracker from a request, with a question about the clip.
# Prints the answers and masks and writes demo_out/overlay.png, demo_out/result.json (and demo_out/question/), and
# demo_out/edit/ (before.png, edited.png, result.json) and demo_out/track/ (overlay.mp4, strip.png, tracks.jsonl).
# assets/shapes_clip.avi is generate_clip(2_000_000_705, frames=30), written losslessly (FFV1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export VITRON_CACHE=${VITRON_CACHE:-$PWD/.venv/vitron_cache}
.venv/bin/vitron query assets/shapes_scene.png "can you segment the yellow triangle below the blue square?" \
  --profile shapes --out demo_out "$@"
.venv/bin/vitron query assets/shapes_scene.png "how many objects are there?" \
  --profile shapes --out demo_out/question "$@"
# An edit of the same scene: the blue square recoloured red, on the invocation the LLM is taught (--reply; the
# LLM still computes the [SEG] state and the segmenter grounds the square): before.png, edited.png, result.json.
.venv/bin/vitron edit assets/shapes_scene.png "make the blue square red." --profile shapes --out demo_out/edit \
  --reply "<module>editor</module> <instruction>recolour: the blue square to red</instruction> [SEG]"
.venv/bin/vitron track assets/shapes_clip.avi --track "the red circle" --ask "how many objects are in the video?" \
  --profile shapes --out demo_out/track "$@"
