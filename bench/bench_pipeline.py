"""Per-stage latency of the VITRON pipeline and its overhead ratio.

    .venv/bin/python bench/bench_pipeline.py [--profile tiny] [--device cpu] [--runs 30]

Overhead ratio = time outside model forward passes / total, where the forward stages are vision encoder, LLM
generation, the [SEG] signal forward and the segmenter calls (vitron_ros.core.timing.MODEL_STAGES). Two
scenarios: a generated answer to a request with a box sketch, and grounding of a written reply that exercises
both mask paths (signal embedding and text box) plus a user point.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vitron_ros.core.image_io import load_image  # noqa: E402
from vitron_ros.core.pipeline import VitronPipeline  # noqa: E402
from vitron_ros.core.sketch import Sketch  # noqa: E402
from vitron_ros.core.timing import MODEL_STAGES  # noqa: E402

GROUNDED_REPLY = (
    "There is <p> a red circle </p> [SEG] left of <p> a blue square </p> <Region>[0.59, 0.29, 0.88, 0.54]</Region>."
)


def summarise(name: str, runs: list[dict[str, float]]) -> None:
    stages = [s for s in runs[0] if s != "total"]
    print(f"\n{name}: median over {len(runs)} runs (ms)")
    for stage in stages + ["total"]:
        values = [r.get(stage, 0.0) * 1000 for r in runs]
        tag = "model" if stage in MODEL_STAGES else ("" if stage == "total" else "overhead")
        print(f"  {stage:<20} {statistics.median(values):9.2f}   p90 {sorted(values)[int(0.9 * (len(values) - 1))]:9.2f}  {tag}")
    ratios = []
    for r in runs:
        model = sum(v for k, v in r.items() if k in MODEL_STAGES)
        ratios.append((r["total"] - model) / r["total"])
    print(f"  overhead ratio (outside model forwards / total): median {statistics.median(ratios):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    import torch

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, profile {args.profile}")
    start = time.perf_counter()
    pipeline = VitronPipeline.from_profile(args.profile, device=args.device)
    print(f"load: {time.perf_counter() - start:.2f} s")
    image = load_image(REPO / "assets" / "demo_scene.png")
    box = [Sketch.box(40, 60, 150, 170)]

    for _ in range(3):  # warm-up: first calls pay allocator and kernel-selection costs
        pipeline(image, "what is this object?", box)
        pipeline.ground_reply(image, "describe the scene", GROUNDED_REPLY, [Sketch.point(245, 190)])

    generated = [pipeline(image, "what is this object?", box)[0].timings for _ in range(args.runs)]
    summarise("query with a box sketch (generated answer)", generated)
    grounded = [
        pipeline.ground_reply(image, "describe the scene", GROUNDED_REPLY, [Sketch.point(245, 190)]).timings
        for _ in range(args.runs)
    ]
    summarise("grounded reply: [SEG] embedding + <Region> box + user point", grounded)


if __name__ == "__main__":
    main()
