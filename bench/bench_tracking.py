"""Per-frame cost and memory of live-stream tracking do not grow with the frames seen.

Streams N frames (default 2000) of moving shapes through `StreamTracker`, one at a time, tracking two objects,
and prints in one run:
- per-frame latency around frame 10 and around frame N (medians over 21 frames), and their ratio (target <= 1.1);
- peak resident memory after warm-up (frame 100) and at frame N, and its growth (target <= 5 %);
- the tracker's retained state (frames and outputs kept per object), which must stay flat.

    .venv/bin/python bench/bench_tracking.py                      # tiny profile, CPU
    .venv/bin/python bench/bench_tracking.py --profile shapes --frames 500
    .venv/bin/python bench/bench_tracking.py --sam2-sizes --device cuda   # published SAM 2.1 sizes, random weights

`--sam2-sizes` builds SAM 2.1 tiny / small / base+ / large from their published configurations with random
weights (speed does not depend on weight values) and reports frames per second on 1024-px frames with one object,
next to the sam2 README's A100 figures.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# sam2 README (A100, torch.compile): frames per second
PUBLISHED_A100_FPS = {"tiny": 91.2, "small": 84.8, "base-plus": 64.1, "large": 39.5}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kilobytes


def moving_frames(count: int, height: int = 240, width: int = 320):
    """Two squares bouncing over a textured background: frame t, generated on demand (no video in memory)."""
    rng = np.random.default_rng(0)
    background = rng.integers(60, 120, (height, width, 3), dtype=np.uint8)

    def frame(t: int) -> np.ndarray:
        image = background.copy()
        for k, colour in enumerate(((220, 40, 40), (40, 60, 220))):
            x = int((40 + 3 * t * (k + 1)) % (2 * (width - 60)))
            x = x if x < width - 60 else 2 * (width - 60) - x
            y = 40 + 100 * k
            image[y : y + 50, x : x + 50] = colour
        return image

    return frame


def stream_bench(profile_name: str, frames: int, device: str, unbounded: bool = False) -> None:
    from vitron_lab.tiny import build_tiny_assets
    from vitron_ros.core.config import load_profile
    from vitron_ros.core.specialists.tracker import Sam2Tracker
    from vitron_ros.core.tracking.state import ObjectPrompt

    profile = load_profile(profile_name)
    if profile.name == "tiny":  # random weights the lab builds
        build_tiny_assets(profile)
    tracker = Sam2Tracker.from_profile(profile, device).stream()
    if unbounded:  # what transformers' session does on its own: keep every frame's outputs and pixels
        tracker._prune = lambda session, frame_index: None
    frame = moving_frames(frames)
    tracker.add_object(ObjectPrompt(box_xyxy=(40, 40, 90, 90)))
    tracker.add_object(ObjectPrompt(box_xyxy=(40, 140, 90, 190)))
    latencies = []
    peak_after_warmup = None
    started = time.perf_counter()
    for t in range(frames):
        tick = time.perf_counter()
        tracker.step(frame(t))
        latencies.append(time.perf_counter() - tick)
        if t == 100:
            peak_after_warmup = peak_rss_mb()
        if (t + 1) % 250 == 0:
            print(f"  frame {t + 1}/{frames}: {1000 * statistics.median(latencies[-50:]):.1f} ms/frame, "
                  f"peak RSS {peak_rss_mb():.0f} MB", flush=True)
    total = time.perf_counter() - started
    early = statistics.median(latencies[0:21])  # frames 0-20: around frame 10
    late = statistics.median(latencies[-21:])  # the last 21 frames: around frame N
    peak_end = peak_rss_mb()
    session = next(iter(tracker.state.objects.values())).session
    outputs = session.output_dict_per_obj[0]
    print(f"profile {profile_name}, {frames} frames of 320x240, 2 objects, {device}, {total:.0f} s"
          + (" (UNBOUNDED: pruning off)" if unbounded else ""))
    print(f"per-frame latency: frame ~10 {1000 * early:.2f} ms, frame ~{frames} {1000 * late:.2f} ms, "
          f"ratio {late / early:.3f} (target <= 1.1)")
    if peak_after_warmup is not None:
        growth = 100 * (peak_end - peak_after_warmup) / peak_after_warmup
        print(f"peak RSS: frame 100 {peak_after_warmup:.1f} MB, frame {frames} {peak_end:.1f} MB, "
              f"growth {growth:+.2f} % (target <= 5 %)")
    print(f"state kept per object at the end: {len(session.processed_frames)} frame(s), "
          f"{len(outputs['non_cond_frame_outputs'])} tracked-frame outputs, {len(outputs['cond_frame_outputs'])} "
          f"prompted-frame outputs (memory window {tracker.memory_window})")


def sam2_size_bench(device: str, frames: int, sizes: list[str]) -> None:
    """Published SAM 2.1 sizes with random weights: streaming FPS on 1024-px frames, one object."""
    import torch
    from transformers import Sam2VideoConfig, Sam2VideoModel

    from vitron_lab.tiny_sam2 import tiny_sam2_processor
    from vitron_ros.core.specialists.tracker import TrackerConfig
    from vitron_ros.core.tracking.state import ObjectPrompt
    from vitron_ros.core.tracking.stream_tracker import StreamTracker

    hiera = {  # the published hiera configurations (sam2.1_hiera_*.yaml / transformers' conversion script)
        "tiny": dict(embed_dim_per_stage=[96, 192, 384, 768], blocks_per_stage=[1, 2, 7, 2],
                     num_attention_heads_per_stage=[1, 2, 4, 8], global_attention_blocks=[5, 7, 9],
                     window_positional_embedding_background_size=[7, 7], hidden_size=96),
        "small": dict(embed_dim_per_stage=[96, 192, 384, 768], blocks_per_stage=[1, 2, 11, 2],
                      num_attention_heads_per_stage=[1, 2, 4, 8], global_attention_blocks=[7, 10, 13],
                      window_positional_embedding_background_size=[7, 7], hidden_size=96),
        "base-plus": dict(embed_dim_per_stage=[112, 224, 448, 896], blocks_per_stage=[2, 3, 16, 3],
                          num_attention_heads_per_stage=[2, 4, 8, 16], global_attention_blocks=[12, 16, 20],
                          window_positional_embedding_background_size=[14, 14], hidden_size=112,
                          num_attention_heads=2),
        "large": dict(embed_dim_per_stage=[144, 288, 576, 1152], blocks_per_stage=[2, 6, 36, 4],
                      num_attention_heads_per_stage=[2, 4, 8, 16], global_attention_blocks=[23, 33, 43],
                      window_positional_embedding_background_size=[7, 7], window_size_per_stage=[8, 4, 16, 8],
                      hidden_size=144, num_attention_heads=2),
    }
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    frame = moving_frames(frames + 10, 1024, 1024)
    for name, backbone in ((n, hiera[n]) for n in sizes):
        channels = list(reversed(backbone["embed_dim_per_stage"]))
        config = Sam2VideoConfig(vision_config=dict(
            model_type="sam2_vision_model", backbone_channel_list=channels,
            backbone_config=dict(model_type="sam2_hiera_det_model", **backbone)))
        model = Sam2VideoModel(config).to(device, dtype).eval()
        tracker = StreamTracker(model, tiny_sam2_processor(1024), TrackerConfig(model=name), device)
        tracker.add_object(ObjectPrompt(box_xyxy=(40, 40, 90, 90)))
        times = []
        for t in range(frames + 10):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            tick = time.perf_counter()
            tracker.step(frame(t))
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - tick)
        fps = 1 / statistics.median(times[10:])
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"SAM 2.1 {name:9s} {params:6.1f} M params: {fps:6.1f} FPS ({1000 / fps:.1f} ms/frame, {dtype}, "
              f"eager) vs published A100 {PUBLISHED_A100_FPS[name]} FPS (compiled)")
        del model, tracker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sam2-sizes", action="store_true", help="time the published SAM 2.1 sizes instead")
    parser.add_argument("--sizes", default="tiny,small,base-plus,large", help="SAM 2.1 sizes for --sam2-sizes")
    parser.add_argument("--unbounded", action="store_true",
                        help="switch pruning off, to see what the bounded window saves")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.sam2_sizes:
        sam2_size_bench(args.device, min(args.frames, 100), args.sizes.split(","))
    else:
        stream_bench(args.profile, args.frames, args.device, args.unbounded)


if __name__ == "__main__":
    main()
