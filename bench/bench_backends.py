"""Encoder backends: latency of each heavy network on each backend, as a ratio to eager PyTorch in the same run;
the memory of the default stack per specialist; and, on a GPU, the real sizes against their published figures.

    .venv/bin/python bench/bench_backends.py                      # tiny + shapes encoders on this CPU
    .venv/bin/python bench/bench_backends.py --real               # + SAM ViT-B, CLIP ViT-L/336, SAM 2.1-tiny at real size
    .venv/bin/python bench/bench_backends.py --compile            # + torch.compile (minutes of compiling on 2 cores)
    .venv/bin/python bench/bench_backends.py --memory             # the default stack's weights at fp16, Orin fits
    .venv/bin/python bench/bench_backends.py --device cuda        # real sizes, random weights, against published

Each latency is the median of --repeats calls after one warm-up, on the export's example inputs (batch 1; the UNet's
batch 2 is classifier-free guidance). Ratios < 1 mean faster than eager PyTorch. Random weights: speed does not
depend on them. The CUDA mode times SAM ViT-H's encoder at 1024x1024 (bf16, eager and compiled, batch 8), a 7B
Llama's greedy decode against the card's bandwidth ceiling (measured in the same run by a large device copy), the
SAM 2.1 sizes per tracked frame (bench_tracking.py) and SD 1.5 512x512 50 steps (bench_edit.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benches' real-size builders

# what the OS, ROS 2 and CUDA context leave of a Jetson's shared memory (JetPack reserves ~2.5 GB on the 32 GB
# module and ~1.5-2 GB on the 8 GB one; the rest of the robot's software needs its share too)
ORIN_USABLE_GB = {"AGX Orin 32 GB": 26.0, "Orin Nano 8 GB": 5.5}


def _sync(device: str):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_ms(fn, repeats: int, device: str = "cpu") -> float:
    fn()  # warm-up (and torch.compile's compile)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def backend_row(exportable, runtime, repeats: int, compile: bool, device: str = "cpu") -> dict:
    """{backend: ms} for one exportable: eager torch, optionally torch.compile, onnxruntime."""
    from vitron_ros.core.backends import load_encoder

    quiet = lambda message: None  # noqa: E731
    row = {}
    plans = [("torch", dataclasses.replace(runtime, backend="torch", fallback=()))]
    if compile:
        plans.append(("torch.compile", dataclasses.replace(runtime, backend="torch", fallback=(), compile=True)))
    plans.append(("onnxruntime", dataclasses.replace(runtime, backend="onnxruntime", fallback=())))
    for label, plan in plans:
        encoder = load_encoder(exportable, plan, device, "float32", quiet)
        row[label] = median_ms(lambda: encoder(*exportable.example), repeats, device)
    return row


def print_rows(title: str, rows: dict[str, dict]) -> None:
    labels = list(next(iter(rows.values())))
    print(f"\n{title}")
    print(f"  {'encoder':<20}" + "".join(f"{label + ' ms':>18}" for label in labels) +
          "".join(f"{label + ' / eager':>22}" for label in labels[1:]))
    for name, row in rows.items():
        eager = row["torch"]
        print(f"  {name:<20}" + "".join(f"{row[label]:18.2f}" for label in labels) +
              "".join(f"{row[label] / eager:22.2f}" for label in labels[1:]))


def profile_bench(name: str, repeats: int, compile: bool, cache: str) -> None:
    from vitron_ros.core.config import load_profile
    from vitron_ros.core.pipeline import VitronPipeline

    profile = load_profile(name)
    pipeline = VitronPipeline.from_profile(profile, progress=lambda message: None)
    runtime = dataclasses.replace(profile.runtime, engine_cache=cache)
    rows = {n: backend_row(e, runtime, repeats, compile) for n, e in sorted(pipeline.exportables().items())}
    print_rows(f"profile {name!r} (CPU, float32)", rows)


def real_size_parts():
    """Real-size networks with random weights: name -> Exportable (SAM ViT-B, CLIP ViT-L/14-336 + LLaVA-1.5's
    projector, SAM 2.1 Hiera-tiny's encoder)."""
    from segment_anything import sam_model_registry
    from transformers import CLIPVisionModel, Sam2VideoConfig, Sam2VideoModel
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    from vitron_ros.core.model.vitron_llm import clip_vision_export
    from vitron_ros.core.specialists.segmenter import sam_image_encoder_export
    from vitron_ros.core.specialists.tracker import sam2_vision_export

    parts = {"SAM ViT-B 1024": sam_image_encoder_export(sam_model_registry["vit_b"]())}
    config = llava_config()
    tower = CLIPVisionModel(config.vision_config)  # what LLaVA builds as its vision_tower
    llava = types.SimpleNamespace(config=config, model=types.SimpleNamespace(
        vision_tower=tower, multi_modal_projector=LlavaMultiModalProjector(config)))
    parts["CLIP-L/336 + proj"] = clip_vision_export(llava, frames=2)
    parts["SAM 2.1-tiny enc"] = sam2_vision_export(Sam2VideoModel(Sam2VideoConfig()).eval())
    return parts


def llava_config():
    """LLaVA-1.5-7B's configuration: CLIP ViT-L/14 at 336 px, a two-layer GELU projector, Vicuna-7B (Llama)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    return LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                       num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768),
        text_config=LlamaConfig(vocab_size=32064), image_token_index=32000, vision_feature_layer=-2,
        projector_hidden_act="gelu")


def memory_table() -> None:
    """The real-size profiles' parts: parameters counted on the meta device (no weights), bytes at fp16."""
    import torch
    from bench_edit import sd15_parts
    from segment_anything import sam_model_registry
    from transformers import LlavaForConditionalGeneration, Sam2VideoConfig, Sam2VideoModel

    from vitron_ros.core.model.heads import HeadsConfig, build_heads

    def count(build) -> int:
        with torch.device("meta"):
            module = build()
        return sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers())

    def sd(in_channels: int) -> int:
        with torch.device("meta"):
            parts = sd15_parts(in_channels)
        return sum(t.numel() for part in parts for t in (*part.parameters(), *part.buffers()))

    llava = count(lambda: LlavaForConditionalGeneration(llava_config()))
    sam_h = count(lambda: sam_model_registry["vit_h"]())
    stacks = {
        "default (LLaVA-1.5 asked its trained prompts, SAM segments its boxes)": {
            "llm": ("LLaVA-1.5-7B (CLIP ViT-L/336 + Vicuna-7B)", llava),
            "segmenter": ("SAM ViT-H", sam_h),
            "tracker": ("SAM 2.1 Hiera-tiny", count(lambda: Sam2VideoModel(Sam2VideoConfig()))),
            "editor+generator": ("SD 1.5 inpainting (UNet 9ch + VAE + CLIP-L text)", sd(9)),
            "editor (instruct)": ("InstructPix2Pix (UNet 8ch + VAE + CLIP-L text)", sd(8)),
        },
        "glamm (GLaMM-FullScope: [SEG] weights; region encoder not ported)": {
            "llm": ("GLaMM LLaVA-1.5-7B + text_hidden_fcs (4096 -> 256)",
                    llava + count(lambda: build_heads(HeadsConfig(4096, 256, sketch_encoder=False)))),
            "segmenter": ("GLaMM's SAM ViT-H (fine-tuned mask decoder)", sam_h),
        },
    }
    for title, stack in stacks.items():
        _print_stack(title, stack)


def _print_stack(title: str, stack: dict) -> None:
    print(f"\n{title}: weights at fp16 (parameters and buffers x 2 bytes; activations, KV cache and the CUDA "
          "context come on top)")
    total = 0
    for name, (what, elements) in stack.items():
        total += elements * 2
        print(f"  {name:<18} {what:<52} {elements / 1e6:8.1f} M  {elements * 2 / 2**30:6.2f} GiB")
    print(f"  {'all':<18} {'':<52} {total / 2 / 1e6:8.1f} M  {total / 2**30:6.2f} GiB")
    for device, usable in ORIN_USABLE_GB.items():
        fits = {n for n, (_, e) in stack.items() if e * 2 / 2**30 <= usable}
        print(f"  {device}: ~{usable:.1f} GiB usable; alone, fits: {sorted(fits)}; all together: "
              f"{'yes' if total / 2**30 <= usable else 'no'}")


def sam_vit_h_bench(repeats: int, device: str) -> None:
    """SAM ViT-H image encoder, 1024x1024, batch 8, bf16: eager and compiled."""
    import torch
    from segment_anything import sam_model_registry

    encoder = sam_model_registry["vit_h"]().image_encoder.to(device, torch.bfloat16).eval()
    batch = torch.randn(8, 3, 1024, 1024, device=device, dtype=torch.bfloat16)
    compiled_encoder = torch.compile(encoder)
    with torch.inference_mode():
        eager = median_ms(lambda: encoder(batch), repeats, device) / 8
        compiled = median_ms(lambda: compiled_encoder(batch), repeats, device) / 8
    print(f"SAM ViT-H encoder 1024x1024 bf16 batch 8: eager {eager:.1f} ms/image, compiled {compiled:.1f} ms/image "
          f"(published A100, bf16 + compile, batch 8: 51 ms/image)")


def bandwidth_bytes_per_s(repeats: int, device: str) -> float:
    """Device memory bandwidth from copying 2 GiB (read + write)."""
    import torch

    source = torch.empty(2 << 30, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    copy_ms = median_ms(lambda: target.copy_(source), repeats, device)
    return 2 * source.numel() / (copy_ms / 1000)


def llm_decode_bench(repeats: int, device: str) -> None:
    """A 7B Llama's greedy decode (fp16, eager) against the bandwidth ceiling measured in the same run."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    bandwidth = bandwidth_bytes_per_s(repeats, device)
    torch.set_default_dtype(torch.float16)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(LlamaConfig(vocab_size=32064)).eval()
    finally:
        torch.set_default_dtype(torch.float32)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    prompt = torch.randint(0, 32000, (1, 32), device=device)
    new_tokens = 128

    def decode():
        with torch.inference_mode():
            model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)

    rate = new_tokens / (median_ms(decode, max(1, repeats // 2), device) / 1000)
    ceiling = bandwidth / weights
    print(f"7B Llama fp16 greedy decode: {rate:.0f} tok/s ({new_tokens} tokens after a 32-token prompt, eager, "
          f"prefill included); bandwidth measured {bandwidth / 1e12:.2f} TB/s -> ceiling {ceiling:.0f} tok/s "
          f"({weights / 1e9:.1f} GB of weights read per token): {rate / ceiling:.0%} of it "
          f"(published: gpt-fast 105 tok/s on an A100, compiled)")


def cuda_bench(repeats: int, sizes: list[str]) -> None:
    import torch
    from bench_edit import bench_sd15
    from bench_tracking import sam2_size_bench

    device = "cuda"
    print(f"\n{torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    for bench in (sam_vit_h_bench, llm_decode_bench):
        bench(repeats, device)
        torch.cuda.empty_cache()
    sam2_size_bench(device, 30, sizes)  # SAM 2.1 per tracked frame, 1024 px
    bench_sd15(device, max(1, repeats // 2))  # SD 1.5 inpainting, 512x512, 50 steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default="tiny,shapes")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile on CPU)")
    parser.add_argument("--real", action="store_true", help="also real-size encoders with random weights on CPU")
    parser.add_argument("--memory", action="store_true", help="only the default stack's memory table")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sam2-sizes", default="tiny,small,base-plus,large")
    args = parser.parse_args()
    if args.memory:
        memory_table()
        return
    if args.device.startswith("cuda"):
        cuda_bench(args.repeats, args.sam2_sizes.split(","))
        return
    import torch

    print(f"CPU: {torch.get_num_threads()} threads, torch {torch.__version__}")
    from vitron_lab.tiny import build_tiny_assets
    from vitron_ros.core.config import RuntimeConfig, load_profile

    with tempfile.TemporaryDirectory() as cache:
        for name in args.profiles.split(","):
            profile = load_profile(name)
            if name == "tiny":  # random weights the lab builds
                build_tiny_assets(profile, progress=lambda message: None)
            profile_bench(name, args.repeats, args.compile, cache)
        if args.real:
            runtime = RuntimeConfig(engine_cache=cache)
            rows = {n: backend_row(e, runtime, max(3, args.repeats // 5), args.compile)
                    for n, e in real_size_parts().items()}
            print_rows("real sizes, random weights (CPU, float32)", rows)


if __name__ == "__main__":
    main()
