"""Per-frame cost and memory of editing a live stream through the tracker do not grow with the frames seen.

Streams N frames (default 1000) of two moving squares through `TrackedEdit` one at a time: the red one is removed
in every frame (the taught invocation, given on the first frame; the tracker follows it, the editor repaints it).
Prints, in one run:
- per-frame latency around frame 10 and around frame N (medians over 21 frames) and their ratio (target <= 1.1);
- peak resident memory after warm-up (frame 100) and at frame N, and its growth (target <= 5 %);
- frames edited, and the largest change outside the edited region over all frames (must be 0).

    .venv/bin/python bench/bench_video_edit.py                          # tiny profile, CPU
    .venv/bin/python bench/bench_video_edit.py --profile shapes --frames 300 --size 64
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_tracking import moving_frames, peak_rss_mb  # noqa: E402 - the script's own folder is on the path


def main() -> None:
    from vitron_ros.core.pipeline import VitronPipeline
    from vitron_ros.core.video_edit import TrackedEdit

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    pipeline = VitronPipeline.from_profile(args.profile, device=args.device, progress=lambda m: None)
    frame = moving_frames(args.frames)
    first = frame(0)
    height, width = first.shape[:2]
    box = f"{40 / width:.3f}, {40 / height:.3f}, {90 / width:.3f}, {90 / height:.3f}"  # the red square, frame 0
    reply = f"<module>editor</module> <instruction>remove: the red square</instruction> <Region>[{box}]</Region> [SEG]"
    edit = TrackedEdit.start(pipeline, first, "remove the red square", reply)
    latencies, worst_outside, peak_after_warmup = [], 0, None
    started = time.perf_counter()
    for t in range(args.frames):
        image = frame(t)
        tick = time.perf_counter()
        out = edit.step(image)
        latencies.append(time.perf_counter() - tick)
        changed = np.abs(out.image.astype(np.int16) - image).max(-1)
        worst_outside = max(worst_outside, int(changed[~out.region].max()) if (~out.region).any() else 0)
        if t == 100:
            peak_after_warmup = peak_rss_mb()
        if (t + 1) % 100 == 0:
            print(f"  frame {t + 1}/{args.frames}: {1000 * statistics.median(latencies[-50:]):.1f} ms/frame, "
                  f"peak RSS {peak_rss_mb():.0f} MB", flush=True)
    total = time.perf_counter() - started
    early, late = statistics.median(latencies[0:21]), statistics.median(latencies[-21:])
    print(f"profile {args.profile}, {args.frames} frames of {width}x{height}, {args.device}, {total:.0f} s; "
          f"{edit.edited_frames} frames edited")
    print(f"per-frame latency: frame ~10 {1000 * early:.1f} ms, frame ~{args.frames} {1000 * late:.1f} ms, "
          f"ratio {late / early:.3f} (target <= 1.1)")
    if peak_after_warmup is not None:
        growth = 100 * (peak_rss_mb() - peak_after_warmup) / peak_after_warmup
        print(f"peak RSS: frame 100 {peak_after_warmup:.1f} MB, frame {args.frames} {peak_rss_mb():.1f} MB, "
              f"growth {growth:+.2f} % (target <= 5 %)")
    print(f"largest change outside the edited region, any frame: {worst_outside} (must be 0)")


if __name__ == "__main__":
    main()
