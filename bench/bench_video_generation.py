"""Per-frame latency of the video generator (AnimateDiff text-to-video and SparseCtrl image-to-video).

`--scale real` builds random-weight parts the size of the `default` profile's published checkpoints (Stable
Diffusion 1.5's UNet, VAE and CLIP text encoder, AnimateDiff's v1-5 motion adapter, SparseCtrl RGB) into a scratch
folder, loads them through the product's own loader (`VideoGenerator.from_config`, as `vitron generate-video`
does) and times clips at the default profile's frames, resolution and steps. Weights are random, so the clips are
noise; the cost is the real model's. `--scale tiny` times the `tiny` profile's parts (what runs on a 2-core CPU).

Prints, in one run: load time, then per task the median clip time over `--runs` (after one warm-up), per frame and
per denoising step, and on CUDA the peak GPU memory.

    .venv/bin/python bench/bench_video_generation.py --device cuda                   # real size, fp16 (a GPU)
    .venv/bin/python bench/bench_video_generation.py --scale tiny                    # the tiny profile, CPU
    .venv/bin/python bench/bench_video_generation.py --frames 2 --resolution 64 --steps 1 --runs 1   # real parts, CPU check
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_edit's SD 1.5-sized parts


def build_real_size(folder: Path, progress=print) -> dict[str, Path]:
    """Random SD 1.5-sized AnimateDiff parts, laid out as the published checkpoints (save_pretrained folders)."""
    import torch
    from bench_edit import sd15_parts
    from diffusers import DDIMScheduler, MotionAdapter, SparseControlNetModel, StableDiffusionPipeline

    from vitron_lab.tiny_diffusion import _tokenizer

    torch.manual_seed(0)
    progress("building SD 1.5-sized UNet, VAE and text encoder (random weights)")
    unet, vae, text_encoder = sd15_parts(in_channels=4)
    # the tiny profiles' tokenizer (saved and loaded like a published one): prompts are shorter than CLIP's 77 tokens
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=_tokenizer(), unet=unet,
                                   scheduler=DDIMScheduler(steps_offset=1), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    paths = {"model": folder / "base", "motion_adapter": folder / "motion_adapter",
             "image_controlnet": folder / "sparsectrl_rgb"}
    pipe.save_pretrained(paths["model"])
    del pipe, unet, vae, text_encoder
    progress("building the motion adapter and the SparseCtrl RGB control net (random weights)")
    MotionAdapter().save_pretrained(paths["motion_adapter"])  # v1-5's layout: 320-1280 channels, 32 positions
    SparseControlNetModel(in_channels=4, conditioning_channels=4, use_simplified_condition_embedding=True
                          ).save_pretrained(paths["image_controlnet"])
    return paths


def _time_task(generator, call, image, runs: int, cuda: bool) -> dict:
    import torch

    generator.generate(call, image)  # warm-up: kernels, allocator, cuDNN autotuning
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(runs):
        tick = time.perf_counter()
        out = generator.generate(call, image)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - tick)
    clip = out.images
    return {"seconds": statistics.median(seconds), "frames": len(clip), "size": clip.shape[1:3],
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}


def main() -> None:
    from vitron_ros.core.config import load_profile
    from vitron_ros.core.specialists.base import SpecialistCall
    from vitron_ros.core.specialists.video_generator import VideoGenerator, VideoGeneratorConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("real", "tiny"), default="real")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=None, help="default: the profile's (16 real, 8 tiny)")
    parser.add_argument("--resolution", type=int, default=None, help="default: the profile's (512 real, 32 tiny)")
    parser.add_argument("--steps", type=int, default=None, help="default: the profile's (25 real, 2 tiny)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scratch", default=None, help="folder for the real-size parts (default: a temporary one)")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    profile = load_profile("default" if args.scale == "real" else "tiny")
    section = profile.section("video_generator")
    overrides = {k: v for k, v in (("frames", args.frames), ("resolution", args.resolution), ("steps", args.steps))
                 if v is not None}
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        if args.scale == "real":
            paths = build_real_size(Path(scratch))
            config = VideoGeneratorConfig(**{**section.__dict__, **{k: str(v) for k, v in paths.items()}, **overrides})
        else:
            from vitron_lab.tiny_video import build_tiny_video_assets

            build_tiny_video_assets(section, profile, progress=lambda m: None)
            config = VideoGeneratorConfig(**{**section.__dict__, **overrides})
        tick = time.perf_counter()
        generator = VideoGenerator.from_config(config, profile, device=args.device, progress=lambda m: None)
        load_seconds = time.perf_counter() - tick
    dtype = next(generator.pipe.unet.parameters()).dtype
    params = sum(p.numel() for m in generator.modules() for p in m.parameters()) / 1e6
    print(f"video generator ({args.scale} size, random weights) on {args.device}, {dtype}: {params:.0f} M parameters, "
          f"loaded in {load_seconds:.1f} s; {config.frames} frames at {config.resolution} px, {config.steps} steps, "
          f"guidance {config.guidance_scale}, median of {args.runs} after a warm-up")
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    tasks = [("text_to_video", None)] + ([("image_to_video", image)] if "image_to_video" in generator.tasks else [])
    for task, given in tasks:
        call = SpecialistCall(task=task, instruction="a red mug sliding to the left")
        result = _time_task(generator, call, given, args.runs, cuda)
        per_frame = result["seconds"] / result["frames"]
        memory = f", peak GPU memory {result['peak_gib']:.2f} GiB" if result["peak_gib"] is not None else ""
        print(f"  {task}: {result['seconds']:.2f} s per clip of {result['frames']} frames "
              f"(returned at {result['size'][1]}x{result['size'][0]}), {1000 * per_frame:.0f} ms per frame, "
              f"{1000 * result['seconds'] / config.steps:.0f} ms per denoising step (clip time / steps){memory}")


if __name__ == "__main__":
    main()
