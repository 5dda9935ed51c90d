"""What the generator and the editor share: their config, loading a diffusers inpainting pipeline once per folder,
VITRON's hybrid conditioning, and the crop / composite arithmetic.

Both run on `StableDiffusionInpaintPipeline` (9-channel UNet), which diffusers tests and keeps current; GLIGEN, the
layout pipeline VITRON used, is deprecated in diffusers 0.42. An SD inpainting checkpoint was trained with a quarter
of its masks covering the whole image, so the same model draws a whole new image (mask everything) and, box by box,
a layout; the editor fills a segmenter mask. Whole-image instruction edits use InstructPix2Pix.

Hybrid message passing: the text half goes through the diffusion model's own text encoder; the LLM's hidden state at
the call's [SEG] goes through `SignalConditioner` (trained, shipped with the checkpoint) into `tokens` extra
cross-attention tokens appended after the text's (after the empty text's when the call has no words). Either half
alone conditions the model; `conditioning` in the profile picks text, signal or both.
"""

from __future__ import annotations

import json
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..backends import Encoder, Exportable
from ..errors import CheckpointLoadError, VitronInputError

PROJECTOR_FILE = "signal_projector.safetensors"
CONDITIONING = ("both", "text", "signal")


@dataclass(frozen=True)
class DiffusionConfig:
    model: str  # local folder or hub id of a diffusers StableDiffusionInpaintPipeline (9-channel UNet)
    revision: str | None = None  # hub revision to pin
    # trained head from the LLM's [SEG] hidden state to conditioning tokens; relative paths are inside `model`.
    # None: this checkpoint has no head, and signal embeddings are not used (text only)
    signal_projector: str | None = PROJECTOR_FILE
    dtype: str = "float16"  # used on CUDA; CPU always runs float32
    resolution: int = 512  # the model's native side: work happens on a square crop resized to it
    steps: int = 30  # denoising steps
    guidance_scale: float = 7.5  # classifier-free guidance (1: off, one UNet pass per step)
    seed: int = 0  # generator seed, so the same request on the same image gives the same pixels
    background_prompt: str = "empty background"  # what a removal fills with (and a layout starts from)
    # which halves of VITRON's hybrid message reach the model: "both" (each one the call has), "text" (the
    # instruction only) or "signal" (the [SEG] embedding only; calls without one fail with a clear error)
    conditioning: str = "both"

    paths: ClassVar[tuple[str, ...]] = ("model",)

    def check(self, where: str) -> None:
        if self.conditioning not in CONDITIONING:
            raise VitronInputError(f"{where}.conditioning: expected one of {CONDITIONING}, got {self.conditioning!r}")
        if self.resolution < 8 or self.resolution % 8:
            raise VitronInputError(f"{where}.resolution: must be a positive multiple of 8, got {self.resolution}")
        if self.steps < 1:
            raise VitronInputError(f"{where}.steps: must be at least 1, got {self.steps}")


@dataclass(frozen=True)
class GeneratorConfig(DiffusionConfig):
    """Text-to-image and layout-grounded generation."""

    def check(self, where: str) -> None:
        super().check(where)
        if self.conditioning == "signal":  # a layout's background pass and its phrases are text
            raise VitronInputError(f"{where}.conditioning: the generator needs text (both or text), got 'signal'")


@dataclass(frozen=True)
class EditorConfig(DiffusionConfig):
    """Mask-grounded edits (remove, replace, recolour, move, add) and whole-image instruction edits."""

    instruct_model: str | None = None  # InstructPix2Pix pipeline for "instruct"; None: this profile has no such task
    image_guidance_scale: float = 1.5  # InstructPix2Pix's pull towards the input image
    grow: int = 2  # pixels the segmenter's mask grows by, so the object's edge is inside what gets repainted
    context: float = 0.5  # crop margin around the region, as a fraction of its box side (the model sees around it)

    paths: ClassVar[tuple[str, ...]] = ("model", "instruct_model")


def _modules():
    import torch
    from torch import nn

    class SignalConditioner(nn.Module):
        """LLM hidden state at [SEG] (B, hidden) -> (B, tokens, cross_attention_dim) conditioning tokens."""

        def __init__(self, hidden_size: int, cross_attention_dim: int, tokens: int = 4):
            super().__init__()
            self.hidden_size, self.cross_attention_dim, self.tokens = hidden_size, cross_attention_dim, tokens
            self.mlp = nn.Sequential(
                nn.Linear(hidden_size, 2 * hidden_size), nn.GELU(), nn.Linear(2 * hidden_size, tokens * cross_attention_dim)
            )
            self.norm = nn.LayerNorm(cross_attention_dim)  # CLIP's text states are layer-normed too

        def forward(self, hidden: torch.Tensor) -> torch.Tensor:
            return self.norm(self.mlp(hidden).view(-1, self.tokens, self.cross_attention_dim))

    return SignalConditioner


def build_signal_conditioner(hidden_size: int, cross_attention_dim: int, tokens: int = 4):
    return _modules()(hidden_size, cross_attention_dim, tokens)


def save_signal_conditioner(module, path: str | Path) -> None:
    from safetensors.torch import save_file

    meta = {"hidden_size": module.hidden_size, "cross_attention_dim": module.cross_attention_dim, "tokens": module.tokens}
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path), metadata={"config": json.dumps(meta)})


def load_signal_conditioner(path: str | Path):
    from safetensors import safe_open

    from ..model.weights import load_strict, read_state_dict

    state = read_state_dict(path)
    try:
        with safe_open(str(path), "pt") as handle:
            meta = json.loads((handle.metadata() or {})["config"])
    except (KeyError, ValueError, OSError) as exc:
        raise CheckpointLoadError(f"signal projector {path} has no readable config metadata: {exc}") from None
    module = build_signal_conditioner(int(meta["hidden_size"]), int(meta["cross_attention_dim"]), int(meta["tokens"]))
    load_strict(module, state, str(path))
    return module.eval()


_LOAD_LOCK = threading.Lock()
# Loaded pipelines, shared while any specialist holds one (the generator and the editor on one checkpoint hold one
# copy of its weights) and freed when none does, so the memory budget can unload them.
_LOADED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def load_once(key, load):
    """The pipeline cached under `key`, else `load()` (under the load lock) cached while anything holds it. Each
    cached pipeline carries `run_lock`: its scheduler is stateful, so one denoising loop at a time on it, whichever
    specialist or pipeline in the process runs it."""
    with _LOAD_LOCK:
        pipe = _LOADED.get(key)
        if pipe is None:
            pipe = load()
            pipe.run_lock = threading.Lock()
            _LOADED[key] = pipe
        return pipe


def _load_pipeline(kind: str, folder: str, device: str, dtype: str):
    import torch
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionInstructPix2PixPipeline

    cls = {"inpaint": StableDiffusionInpaintPipeline, "instruct": StableDiffusionInstructPix2PixPipeline}[kind]
    torch_dtype = getattr(torch, dtype) if device.startswith("cuda") else torch.float32
    try:
        pipe = cls.from_pretrained(
            folder, dtype=torch_dtype, safety_checker=None, requires_safety_checker=False, low_cpu_mem_usage=False
        )
    except Exception as exc:  # missing parts, wrong UNet width, corrupt weights: one clear message
        raise CheckpointLoadError(f"cannot load {cls.__name__} from {folder}: {type(exc).__name__}: {exc}") from None
    expected = {"inpaint": 9, "instruct": 8}[kind]
    if pipe.unet.config.in_channels != expected:
        raise CheckpointLoadError(
            f"{folder}: {cls.__name__} needs a UNet with {expected} input channels, this one has "
            f"{pipe.unet.config.in_channels}"
        )
    pipe.set_progress_bar_config(disable=True)  # progress goes through Frame.on_step
    return pipe.to(device)


def load_pipeline(kind: str, model: str, revision: str | None, device: str, dtype: str, fetch_hint: str,
                  runtime=None, resolution: int = 512, progress=print):
    """The diffusers pipeline in `model` (folder or cached hub id), loaded once per process and shared: the
    generator and the editor on the same checkpoint hold one copy of its weights.

    With `runtime`, the inpainting UNet runs on its backend (`pipe.unet_encoder` says which). InstructPix2Pix's
    UNet (three guidance branches) stays on PyTorch."""
    from ..backends import load_encoder
    from ..config import RuntimeConfig
    from ..model.vitron_llm import resolve_model_path

    runtime = runtime or RuntimeConfig()
    folder = resolve_model_path(model, revision, fetch_hint, what=f"{kind} diffusion checkpoint")
    key = (kind, str(folder), device, dtype, runtime if kind == "inpaint" else None, resolution)

    def load():
        pipe = _load_pipeline(kind, str(folder), device, dtype)
        if kind == "inpaint":
            export = unet_export(pipe.unet, resolution, pipe.vae_scale_factor)
            pipe.unet_encoder = load_encoder(export, runtime, device, dtype, progress)
            if pipe.unet_encoder.backend != "torch" or runtime.compile:
                install_unet(pipe.unet, pipe.unet_encoder)
        return pipe

    return load_once(key, load)


def pipeline_modules(pipe) -> list:
    """The torch modules of a diffusers pipeline (for memory accounting)."""
    import torch

    return [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]


class HybridConditioning:
    """Builds (prompt_embeds, negative_prompt_embeds) from the text half, the signal half, or both."""

    def __init__(self, pipe, conditioner=None, mode: str = "both"):
        self.pipe, self.conditioner, self.mode = pipe, conditioner, mode
        if conditioner is not None:
            width = pipe.text_encoder.config.hidden_size
            if conditioner.cross_attention_dim != width:
                raise CheckpointLoadError(
                    f"signal projector writes {conditioner.cross_attention_dim}-wide tokens but the text encoder's are "
                    f"{width}: projector and diffusion checkpoint do not belong together"
                )
            self.conditioner = conditioner.to(pipe.device)

    @property
    def signal_dim(self) -> int | None:
        return None if self.conditioner is None else self.conditioner.hidden_size

    def __call__(self, text: str | None, signal: np.ndarray | None, negative: str = ""):
        import torch

        if self.mode == "text" or (self.mode == "both" and self.conditioner is None and text):
            signal = None  # ("both" on a checkpoint without a projector: the text half is all it has)
        elif self.mode == "signal":
            if signal is None:
                raise VitronInputError("this editor is conditioned by signal embeddings only, and the call has no [SEG]")
            text, negative = None, ""
        if not text and signal is None:
            raise VitronInputError("nothing to condition on: no text and no signal embedding")
        device, dtype = self.pipe.device, self.pipe.unet.dtype
        parts, negatives = [], []
        if text or signal is not None:  # a signal alone goes beside the empty text's tokens, as it was trained
            with torch.inference_mode():
                embeds, negative_embeds = self.pipe.encode_prompt(text or "", device, 1, True, negative_prompt=negative)
            parts.append(embeds)
            negatives.append(negative_embeds)
        if signal is not None:
            if self.conditioner is None:
                raise VitronInputError("this diffusion checkpoint has no signal projector; the call needs text")
            signal = np.asarray(signal, np.float32).reshape(-1)
            if signal.shape[0] != self.conditioner.hidden_size:
                raise VitronInputError(
                    f"signal embedding has width {signal.shape[0]}, the projector expects {self.conditioner.hidden_size}"
                )
            with torch.inference_mode():
                tokens = self.conditioner(torch.as_tensor(signal, device=device)[None]).to(dtype)
            parts.append(tokens)
            negatives.append(torch.zeros_like(tokens))
        return torch.cat(parts, dim=1), torch.cat(negatives, dim=1)


def step_callback(on_step, steps: int):
    """diffusers' callback_on_step_end calling `on_step(step, steps)`; its exception (a cancel) stops the loop."""

    def callback(pipe, index, timestep, kwargs):
        if on_step is not None:
            on_step(index + 1, steps)
        return kwargs

    return callback


def run_each(calls, serve) -> list:
    """`serve(call)` for every call; a VitronInputError becomes that call's output, as the Specialist protocol asks."""
    outputs = []
    for call in calls:
        try:
            outputs.append(serve(call))
        except VitronInputError as exc:
            outputs.append(exc)
    return outputs


def denoise(pipe, config: DiffusionConfig, on_step, **inputs) -> np.ndarray:
    """One diffusers pipeline call with the config's steps, guidance and seed; step progress to `on_step`.
    Returns the image as (H, W, 3) uint8."""
    import torch

    with pipe.run_lock:  # the editor and the generator share one pipeline (and its scheduler's state)
        result = pipe(
            num_inference_steps=config.steps,
            guidance_scale=config.guidance_scale,
            generator=torch.Generator("cpu").manual_seed(config.seed),
            output_type="np",
            callback_on_step_end=step_callback(on_step, config.steps),
            **inputs,
        ).images[0]
    return to_uint8(result)


def to_uint8(pixels) -> np.ndarray:
    """A diffusers pipeline's float output (0-1) as uint8, rounded."""
    return np.clip(np.asarray(pixels, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def square_crop(box_xyxy, image_hw: tuple[int, int], margin: float, min_side: int) -> tuple[int, int, int, int]:
    """Integer square (x1, y1, x2, y2) around `box_xyxy` with `margin` x its side on each side, at least `min_side`
    (capped by the image), shifted to lie inside the image."""
    height, width = image_hw
    x1, y1, x2, y2 = box_xyxy
    side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin)
    side = int(round(min(max(side, min_side), height, width)))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    left = int(round(min(max(cx - side / 2.0, 0), width - side)))
    top = int(round(min(max(cy - side / 2.0, 0), height - side)))
    return left, top, left + side, top + side


def to_model(image: np.ndarray, resolution: int, mask: bool = False) -> np.ndarray:
    """Resize a crop to the model's square side (nearest for masks, so they stay binary)."""
    import cv2

    interpolation = cv2.INTER_NEAREST if mask else cv2.INTER_AREA
    source = image.astype(np.uint8) if mask else image
    return cv2.resize(source, (resolution, resolution), interpolation=interpolation)


def from_model(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(image, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_LINEAR)


def composite(original: np.ndarray, edited: np.ndarray, region: np.ndarray) -> np.ndarray:
    """`edited` inside `region`, `original` everywhere else, exactly: outside pixels are the input's bytes."""
    if original.shape != edited.shape or region.shape != original.shape[:2]:
        raise ValueError(f"composite shapes differ: {original.shape}, {edited.shape}, region {region.shape}")
    return np.where(region[..., None], edited, original).astype(np.uint8)


def grow_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    if pixels <= 0:
        return mask.copy()
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def load_conditioner_for(config: DiffusionConfig, folder: Path):
    if config.signal_projector is None:
        return None
    path = Path(config.signal_projector)
    path = path if path.is_absolute() else folder / path
    if not path.is_file():
        raise CheckpointLoadError(f"signal projector {path} not found (set signal_projector: null for text only)")
    return load_signal_conditioner(path)


# -- exports: trace-friendly wrappers for the backends (ONNX Runtime, TensorRT), checked in tests/test_backends.py --

def unet_export(unet, resolution: int, latent_scale: int, text_tokens: int = 77, signal_tokens: int = 8) -> Exportable:
    """The denoiser: (B, C, h, w) latents, (1,) timestep, (B, T, D) conditioning tokens -> (B, C_out, h, w).

    B is 2 under classifier-free guidance; T is the text's tokens plus any [SEG] conditioning tokens."""
    import torch
    from torch import nn

    class UNetExport(nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states):
            # the class's forward, not the instance's: install_unet replaces the latter with a call into this
            forward = type(self.unet).forward
            return forward(self.unet, sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]

    side = resolution // latent_scale
    cfg = unet.config
    example = (torch.randn(2, cfg.in_channels, side, side), torch.tensor([500.0]),
               torch.randn(2, text_tokens, cfg.cross_attention_dim))
    return Exportable("unet", UNetExport(unet).eval(), example, ("sample", "timestep", "encoder_hidden_states"),
                      ("noise_pred",),
                      dynamic={"sample": {0: "batch"}, "encoder_hidden_states": {0: "batch", 1: "tokens"}},
                      shape_range={"batch": (1, 2, 2), "tokens": (text_tokens, text_tokens, text_tokens + signal_tokens)})


def install_unet(unet, encoder: Encoder) -> None:
    """Run `unet`'s forward on the encoder; the module stays (diffusers reads its config, dtype and device)."""
    import torch

    def forward(sample, timestep, encoder_hidden_states=None, timestep_cond=None, cross_attention_kwargs=None,
                added_cond_kwargs=None, return_dict=True, **kwargs):
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        t = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1)[:1]
        (noise,) = encoder(sample, t, encoder_hidden_states)
        noise = noise.to(sample.dtype)
        return UNet2DConditionOutput(sample=noise) if return_dict else (noise,)

    unet.forward = forward
