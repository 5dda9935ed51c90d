"""Train the `shapes` profile's generator/editor from scratch on ShapesWorld: a diffusers inpainting pipeline
(AutoencoderKL, CLIP text encoder, 9-channel UNet, DDIM) and, in its own later stage, the signal projector.

    vitron-lab train --stage diffusion --config lab/config/train_shapes.yaml   # VAE, then UNet + text encoder
    vitron-lab train --stage signal --config lab/config/train_shapes.yaml      # SignalConditioner on the LLM's [SEG] states

Every training example is made by the editor's own planning code (`plan_edit`) on a ShapesWorld scene, so the
model learns exactly the inputs it gets at inference: the crop, the region it repaints, the conditioning text.
The target is the scene re-rendered with the edit done (shapes/edits.py). Layout generation needs no examples of its
own: its passes are a whole-canvas background and one `add` per box.

The UNet predicts the clean latent (`prediction_type: sample`): ShapesWorld's flat colours make that a well-posed
regression, and a handful of DDIM steps then suffice on a CPU.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..shapes.edits import edit_case, scene_background
from ..shapes.world import generate_scene

TRAIN_SEED_LIMIT = 1_000_000_000  # as the LLM's stages: training scenes below, evaluation scenes above
BACKGROUND_PROMPT = "empty background"


@dataclass(frozen=True)
class DiffusionTrainConfig:
    resolution: int = 64  # ShapesWorld's side; the editor works on the whole scene
    vae_channels: tuple[int, ...] = (16, 32)  # two levels: latents at half the side
    vae_steps: int = 400
    vae_lr: float = 2.0e-3
    unet_channels: tuple[int, ...] = (32, 64, 64)
    text_width: int = 64  # CLIP text hidden size = the UNet's cross-attention width
    text_layers: int = 2
    text_tokens: int = 32
    vocab_size: int = 800
    steps: int = 1600  # UNet + text encoder updates
    batch: int = 16
    lr: float = 1.0e-3
    refine_steps: int = 0  # a second, lower-rate cosine cycle on the same data (0: none)
    refine_lr: float = 3.0e-4
    warmup_steps: int = 50
    uncond_share: float = 0.1  # examples with empty text, so classifier-free guidance has an unconditional model
    inside_weight: float = 4.0  # extra loss weight on the repainted region (outside is composited back anyway)
    tasks: dict[str, float] = field(default_factory=lambda: {
        "remove": 0.25, "move": 0.1, "recolour": 0.2, "replace": 0.15, "add": 0.2, "background": 0.1})
    log_every: int = 50
    # signal stage: the SignalConditioner from the LLM's [SEG] hidden state, UNet and text encoder frozen
    signal_steps: int = 300
    signal_lr: float = 1.0e-3
    signal_tokens: int = 4
    signal_only_share: float = 0.5  # examples conditioned by the signal alone; the rest by text and signal


def example_plan(case):
    """(start image, fill mask, text) of an EditCase, through the editor's own plan_edit."""
    from vitron_ros.core.specialists.base import SpecialistCall
    from vitron_ros.core.specialists.diffusion import EditorConfig
    from vitron_ros.core.specialists.editor import plan_edit

    call = SpecialistCall(task=case.task, instruction=case.instruction, box_xyxy=case.box_xyxy, mask=case.mask)
    plan = plan_edit(call, case.source, EditorConfig(model="-", background_prompt=BACKGROUND_PROMPT))
    return plan.start, plan.fill, plan.text


def make_example(rng: np.random.Generator, tasks: dict[str, float], size: int):
    """(start, fill, text, target, case) for one random task on one random training scene."""
    names = list(tasks)
    weights = np.asarray([tasks[n] for n in names], float)
    weights /= weights.sum()
    while True:
        scene = generate_scene(int(rng.integers(TRAIN_SEED_LIMIT)), size=size)
        task = names[int(rng.choice(len(names), p=weights))]
        if task == "background":  # a layout's first pass: the whole canvas, from a grey start
            fill = np.ones(scene.image.shape[:2], bool)
            return np.full_like(scene.image, 127), fill, BACKGROUND_PROMPT, scene_background(scene), None
        case = edit_case(scene, task, rng)
        if case is None:
            continue
        start, fill, text = example_plan(case)
        return start, fill, text, case.truth, case


def images_to_tensor(images: list[np.ndarray]):
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float in [-1, 1], as the VAE takes it."""
    import torch

    return torch.as_tensor(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def build_components(config: DiffusionTrainConfig, seed: int):
    """Random VAE, text encoder, UNet and the tokenizer (trained here on the ShapesWorld corpus)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ..tiny import train_tokenizer

    torch.manual_seed(seed)
    tokenizer = train_tokenizer(config.vocab_size, "shapes")
    tokenizer.model_max_length = config.text_tokens
    levels = len(config.vae_channels)
    vae = AutoencoderKL(
        block_out_channels=list(config.vae_channels), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * levels, up_block_types=["UpDecoderBlock2D"] * levels,
        layers_per_block=1, norm_num_groups=8, mid_block_add_attention=False, sample_size=config.resolution,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_size=config.text_width, intermediate_size=2 * config.text_width, num_attention_heads=4,
        num_hidden_layers=config.text_layers, vocab_size=len(tokenizer), max_position_embeddings=config.text_tokens,
    ))
    unet_levels = len(config.unet_channels)
    unet = UNet2DConditionModel(
        block_out_channels=tuple(config.unet_channels), layers_per_block=1,
        sample_size=config.resolution // 2 ** (levels - 1), in_channels=9, out_channels=4,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (unet_levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (unet_levels - 1) + ("UpBlock2D",),
        cross_attention_dim=config.text_width, norm_num_groups=16, attention_head_dim=8,
    )
    return tokenizer, vae, text_encoder, unet


def make_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
        prediction_type="sample", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )


def _lr(base: float, step: int, steps: int, warmup: int) -> float:
    return base * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / steps)))


def fit_adamw(params: list, batch_loss, steps: int, lr: float, config, desc: str,
              weight_decay: float = 0.01, clip: bool = False) -> dict:
    """AdamW on `params` for `steps` updates of `batch_loss(step)` (warm-up, then cosine), with a progress bar;
    returns the phase's report (updates, seconds, mean loss over its first and last `log_every` updates).
    `config`: a training config with `warmup_steps` and `log_every`."""
    import torch
    from tqdm import tqdm

    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    history, started = [], time.perf_counter()
    bar = tqdm(range(steps), desc=desc, unit="update")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = _lr(lr, step, steps, config.warmup_steps)
        loss = batch_loss(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        history.append(loss.item())
        if (step + 1) % config.log_every == 0:
            bar.set_postfix(loss=f"{np.mean(history[-config.log_every:]):.4f}")
    return {"steps": steps, "seconds": time.perf_counter() - started,
            "loss_first": float(np.mean(history[: config.log_every])),
            "loss_last": float(np.mean(history[-config.log_every:]))}


def load_components(folder: str | os.PathLike):
    """(tokenizer, vae, text_encoder, unet) of a diffusers inpainting folder, fresh (not the inference cache)."""
    from diffusers import StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    return pipe.tokenizer, pipe.vae, pipe.text_encoder, pipe.unet


class DiffusionTrainer:
    def __init__(self, config: DiffusionTrainConfig, seed: int = 0, progress=print, components=None):
        """`components`: (tokenizer, vae, text_encoder, unet) of a trained pipeline; None builds random ones."""
        self.config, self.seed, self.progress = config, seed, progress
        self.tokenizer, self.vae, self.text_encoder, self.unet = components or build_components(config, seed)
        self.scheduler = make_scheduler()

    # -- stage 1: the autoencoder ---------------------------------------------------------------------------
    def train_vae(self) -> dict:
        import torch

        cfg, vae = self.config, self.vae
        rng = np.random.default_rng([self.seed, 100])

        def batch_loss(step):
            x = images_to_tensor([make_example(rng, cfg.tasks, cfg.resolution)[3] for _ in range(cfg.batch)])
            posterior = vae.encode(x).latent_dist
            y = vae.decode(posterior.sample()).sample
            return (y - x).abs().mean() + (y - x).pow(2).mean() + 1e-6 * posterior.kl().mean()

        vae.train()
        report = fit_adamw(list(vae.parameters()), batch_loss, cfg.vae_steps, cfg.vae_lr, cfg, "diffusion: autoencoder",
                      weight_decay=0.0)
        vae.eval()
        with torch.no_grad():  # latents scaled to unit variance, as SD's scaling_factor does
            x = images_to_tensor([make_example(rng, cfg.tasks, cfg.resolution)[3] for _ in range(64)])
            latents = vae.encode(x).latent_dist.sample()
            vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
            report["reconstruction_l1"] = (vae.decode(latents).sample - x).abs().mean().item() / 2  # 0-1 pixels
        return report

    # -- stage 2: UNet + text encoder -------------------------------------------------------------------------
    def encode_text(self, texts: list[str]):
        ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids)[0]

    def unet_inputs(self, examples):
        """(target latents, mask at latent size, masked-image latents) the way the inpainting pipeline makes them."""
        import torch
        import torch.nn.functional as F

        scale = self.vae.config.scaling_factor
        starts = images_to_tensor([e[0] for e in examples])
        fills = torch.as_tensor(np.stack([e[1] for e in examples]), dtype=torch.float32)[:, None]
        targets = images_to_tensor([e[3] for e in examples])
        with torch.no_grad():
            latents = self.vae.encode(targets).latent_dist.sample() * scale
            masked = self.vae.encode(starts * (fills < 0.5)).latent_dist.sample() * scale
        mask = F.interpolate(fills, size=latents.shape[-2:])
        return latents, mask, masked

    def denoising_loss(self, examples, conditioning):
        import torch

        latents, mask, masked = self.unet_inputs(examples)
        noise = torch.randn_like(latents)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (latents.shape[0],))
        noisy = self.scheduler.add_noise(latents, noise, t)
        prediction = self.unet(torch.cat([noisy, mask, masked], dim=1), t, conditioning).sample
        weight = 1.0 + self.config.inside_weight * mask
        return ((prediction - latents).pow(2) * weight).mean()

    def train_unet(self, phase: str = "unet") -> dict:
        """`unet`: config.steps updates at config.lr; `refine`: config.refine_steps more at config.refine_lr."""
        cfg = self.config
        steps, lr, stream = (cfg.steps, cfg.lr, 101) if phase == "unet" else (cfg.refine_steps, cfg.refine_lr, 103)
        self.vae.requires_grad_(False)
        rng = np.random.default_rng([self.seed, stream])

        def batch_loss(step):
            examples = [make_example(rng, cfg.tasks, cfg.resolution) for _ in range(cfg.batch)]
            texts = ["" if rng.random() < cfg.uncond_share else e[2] for e in examples]
            return self.denoising_loss(examples, self.encode_text(texts))

        self.unet.train()
        self.text_encoder.train()
        params = list(self.unet.parameters()) + list(self.text_encoder.parameters())
        report = fit_adamw(params, batch_loss, steps, lr, cfg, f"diffusion: {phase}", clip=True)
        self.unet.eval()
        self.text_encoder.eval()
        return report

    def pipeline(self):
        from diffusers import StableDiffusionInpaintPipeline

        pipe = StableDiffusionInpaintPipeline(
            vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer, unet=self.unet,
            scheduler=self.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe


PHASES_FILE = "training_phases.json"


def train_diffusion(folder: str | os.PathLike, config: DiffusionTrainConfig, seed: int = 0, progress=print,
                    resume: bool = True) -> dict:
    """Train the autoencoder, then the UNet and text encoder (then the refining cycle, if any), saving the pipeline
    (save_pretrained) to `folder` after each phase. With `resume`, phases `folder` records as finished are skipped
    and training goes on from the weights saved there."""
    import json

    import torch

    from vitron_ros.core.model.weights import readable_by_all, replacing_folder

    folder = Path(folder)
    done: dict = {}
    components = None
    if resume and (folder / PHASES_FILE).is_file():
        done = json.loads((folder / PHASES_FILE).read_text())
        components = load_components(folder)
        progress(f"diffusion: resuming in {folder} after {', '.join(done)}")
    trainer = DiffusionTrainer(config, seed, progress, components)
    phases = [("autoencoder", trainer.train_vae), ("unet", trainer.train_unet)]
    if config.refine_steps:
        phases.append(("refine", lambda: trainer.train_unet("refine")))
    for index, (name, run) in enumerate(phases):
        if name in done:
            continue
        if index:
            torch.manual_seed(seed + index)
        report = run()
        done[name] = report
        extra = f", reconstruction L1 {report['reconstruction_l1']:.4f}" if "reconstruction_l1" in report else ""
        progress(f"diffusion {name}: {report['steps']} updates in {report['seconds'] / 60:.1f} min, loss "
                 f"{report['loss_first']:.4f} -> {report['loss_last']:.4f}{extra}")
        with replacing_folder(folder) as staging:
            trainer.pipeline().save_pretrained(staging)
            (staging / PHASES_FILE).write_text(json.dumps(done, indent=1))
        readable_by_all(folder)
    return done


# -- the signal stage -------------------------------------------------------------------------------------------

SIGNAL_TASKS = ("remove", "recolour", "replace", "move")  # edits whose invocation carries a [SEG]


def signal_examples(llm, system: str, count: int, config: DiffusionTrainConfig, rng: np.random.Generator,
                    progress=None):
    """`count` (start, fill, text, truth, hidden) examples: the LLM's hidden state at the [SEG] of the invocation it
    is taught to write for the edit, computed exactly as at inference (same prompt, teacher-forced reply)."""
    from tqdm import tqdm

    from vitron_ros.core.conversation import Conversation, Turn

    from ..shapes.instructions import edit_reply

    examples = []
    with tqdm(total=count, desc="signal: LLM [SEG] states", unit="example", disable=progress is None) as bar:
        while len(examples) < count:
            scene = generate_scene(int(rng.integers(TRAIN_SEED_LIMIT)), size=config.resolution)
            case = edit_case(scene, SIGNAL_TASKS[int(rng.integers(len(SIGNAL_TASKS)))], rng)
            if case is None:
                continue
            conversation = Conversation(system=system, turns=[Turn(user=case.request)], image_hw=scene.image.shape[:2])
            prompt = llm.build_prompt(conversation, llm.encode_image(scene.image))
            hidden = llm.signal_hidden_states(prompt, llm.encode_reply(edit_reply(case, scene.image.shape[:2])))
            start, fill, text = example_plan(case)
            examples.append((start, fill, text, case.truth, hidden[0]))
            bar.update(1)
    return examples


def train_signal(folder: str | os.PathLike, config: DiffusionTrainConfig, llm, system: str, seed: int = 0,
                 progress=print) -> dict:
    """Train the SignalConditioner of the diffusion pipeline in `folder` (UNet, VAE and text encoder frozen) on the
    LLM's [SEG] states, half the examples conditioned by the signal alone, half by text and signal; saves it as
    `signal_projector.safetensors` in `folder`."""
    import torch

    from vitron_ros.core.specialists.diffusion import PROJECTOR_FILE, build_signal_conditioner, save_signal_conditioner

    folder = Path(folder)
    trainer = DiffusionTrainer(config, seed, progress, load_components(folder))
    for module in (trainer.vae, trainer.text_encoder, trainer.unet):
        module.requires_grad_(False).eval()
    rng = np.random.default_rng([seed, 102])
    started = time.perf_counter()
    pool = signal_examples(llm, system, config.signal_steps * config.batch // 4, config, rng, progress=progress)
    torch.manual_seed(seed + 2)
    conditioner = build_signal_conditioner(llm.hidden_size, trainer.text_encoder.config.hidden_size,
                                           config.signal_tokens)

    def batch_loss(step):
        batch = [pool[int(i)] for i in rng.integers(len(pool), size=config.batch)]
        tokens = conditioner(torch.as_tensor(np.stack([e[4] for e in batch])))
        # signal only: the [SEG] tokens beside the empty text's (what HybridConditioning sends in "signal" mode)
        signal_only = rng.random() < config.signal_only_share
        with torch.no_grad():
            text = trainer.encode_text(["" if signal_only else e[2] for e in batch])
        return trainer.denoising_loss(batch, torch.cat([text, tokens], dim=1))

    report = fit_adamw(list(conditioner.parameters()), batch_loss, config.signal_steps, config.signal_lr, config,
                  "signal: projector")
    save_signal_conditioner(conditioner.eval(), folder / PROJECTOR_FILE)
    report.update(examples=len(pool), seconds=time.perf_counter() - started)  # the LLM states' time included
    progress(f"signal projector: {report['steps']} updates on {report['examples']} LLM states in "
             f"{report['seconds'] / 60:.1f} min, loss {report['loss_first']:.4f} -> {report['loss_last']:.4f}")
    return report
