"""Edit and generation latency: per denoising step and per whole edit, through the editor and generator.

    python bench/bench_edit.py [--profile tiny] [--repeats 5] [--device cpu]
    python bench/bench_edit.py --sd15 --device cuda        # SD 1.5 inpainting size, random weights, 512 px, 50 steps

Each figure is the median of --repeats runs after one warm-up; per-step time is measured between diffusers'
step callbacks, so it excludes text encoding, VAE and compositing, which the whole-edit figure includes.
`--sd15` builds SD 1.5 inpainting's UNet / VAE / CLIP text encoder from their published configs with random
weights (speed does not depend on the weights) and times one 512x512, 50-step inpainting call, to compare with the
1.44 s that diffusers reports for it on an H100 PCIe (eager).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _timed_steps():
    marks: list[float] = []

    def on_step(step, steps):
        marks.append(time.perf_counter())

    return marks, on_step


def bench_profile(profile: str, device: str, repeats: int) -> None:
    from vitron_lab.shapes.world import generate_scene
    from vitron_lab.tiny import build_tiny_assets
    from vitron_ros.core.config import load_profile
    from vitron_ros.core.specialists import SPECIALISTS, Frame, SpecialistCall

    cfg = load_profile(profile)
    if cfg.name == "tiny":  # random weights the lab builds
        build_tiny_assets(cfg)
    image = generate_scene(seed=3).image
    mask = np.zeros(image.shape[:2], bool)
    mask[16:40, 16:40] = True
    cases = [
        ("editor", SpecialistCall(task="remove", instruction="the red circle", mask=mask)),
        ("editor", SpecialistCall(task="recolour", instruction="the red circle to blue", mask=mask)),
        ("generator", SpecialistCall(task="generation", instruction="a red circle left of a blue square")),
        ("generator", SpecialistCall(task="layout", instruction="<p> a red circle </p> <Region>[0.1, 0.1, 0.4, 0.4]"
                                     "</Region> <p> a blue square </p> <Region>[0.55, 0.5, 0.9, 0.85]</Region>")),
    ]
    print(f"profile {profile} on {device}: median of {repeats} after one warm-up")
    for name, call in cases:
        section = cfg.section(name)
        if section is None:
            print(f"  {name}: not in this profile")
            continue
        specialist = SPECIALISTS[name].build(section, cfg, device)
        whole, per_step = [], []
        for i in range(repeats + 1):
            marks, on_step = _timed_steps()
            start = time.perf_counter()
            output = specialist.run(Frame(image, on_step=on_step), [call])[0]
            if isinstance(output, Exception):
                raise output
            elapsed = time.perf_counter() - start
            if i:
                whole.append(elapsed)
                per_step += list(np.diff(marks))
        step = statistics.median(per_step) * 1000 if per_step else float("nan")
        print(f"  {name} {call.task:<10} {section.resolution}px {section.steps} steps: "
              f"whole {statistics.median(whole) * 1000:8.1f} ms, per step {step:7.2f} ms")


def sd15_parts(in_channels: int = 4):
    """(UNet, VAE, CLIP-L text encoder) of Stable Diffusion 1.5 from their published configs, random weights.

    `in_channels`: 4 text-to-image, 9 inpainting, 8 InstructPix2Pix. Speed and memory do not depend on the weights.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = UNet2DConditionModel(in_channels=in_channels, cross_attention_dim=768, sample_size=64)  # SD 1.5's config
    vae = AutoencoderKL(
        block_out_channels=[128, 256, 512, 512], latent_channels=4, sample_size=512,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2,
    )
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                        num_hidden_layers=12, vocab_size=49408, max_position_embeddings=77))
    return unet, vae, text


def bench_sd15(device: str, repeats: int) -> None:
    import torch
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline

    from vitron_lab.tiny import train_tokenizer

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    unet, vae, text = sd15_parts(in_channels=9)
    tokenizer = train_tokenizer(400)
    tokenizer.model_max_length = 77
    pipe = StableDiffusionInpaintPipeline(
        vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=DDIMScheduler(steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    print(f"SD 1.5 inpainting size, random weights: UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.0f} M")
    from PIL import Image

    image = Image.fromarray(np.full((512, 512, 3), 127, np.uint8))
    mask = Image.fromarray(np.pad(np.full((256, 256), 255, np.uint8), 128))
    times = []
    for i in range(repeats + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        pipe(prompt="a red mug", image=image, mask_image=mask, height=512, width=512, num_inference_steps=50,
             guidance_scale=7.5, output_type="np")
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    print(f"  512x512, 50 steps, guidance 7.5, {dtype}: {statistics.median(times):.2f} s "
          f"(diffusers' published figure: 1.44 s on an H100 PCIe, eager)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sd15", action="store_true", help="time SD 1.5 inpainting's size with random weights")
    args = parser.parse_args()
    if args.sd15:
        bench_sd15(args.device, args.repeats)
    else:
        bench_profile(args.profile, args.device, args.repeats)


if __name__ == "__main__":
    main()
