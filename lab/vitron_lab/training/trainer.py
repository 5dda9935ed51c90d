"""Stage-by-stage training with progress, safetensors checkpoints, resume and fixed seeds.

    work_dir/init/               the freshly built checkpoint folder (config, tokenizer, processor, random weights)
    work_dir/<stage>/latest.*    resumable state: weights, optimiser, step (every `checkpoint_every` updates)
    work_dir/<stage>/final.safetensors   the stage's result; the next stage starts from it
    work_dir/<stage>/log.jsonl   losses every `log_every` updates

Every update's data comes from a generator seeded by (recipe seed, stage, step), so a resumed run sees the same
scenes and samples as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vitron_ros.core.config import ProfileConfig, load_profile
from vitron_ros.core.specialists import system_prompt
from vitron_ros.core.errors import VitronInputError
from vitron_ros.core.model.facts import TrainedWith, read_facts, write_facts
from vitron_ros.core.model.video_pooling import DEFAULT_VIDEO_POOLING
from vitron_ros.core.model.weights import readable_by_all, replacing_folder
from vitron_ros.core.video import ClipSampling

from ..shapes.instructions import BOX_FORMAT, make_sample
from ..shapes.video_instructions import make_video_sample
from ..shapes.world import generate_clip, generate_scene
from ..tiny import TinyBuildConfig
from .model import TrainableVitron, user_prompts
from .packing import Packer
from .recipe import STAGE_NAMES, StageConfig, TrainConfig

TRAIN_SEED_LIMIT = 1_000_000_000  # training scenes use seeds below this; evaluation uses seeds above it
CLIP_FRAMES = 16  # frames per training clip; the video encoder sees ClipSampling().frames of them


def relocated(profile: ProfileConfig, folder: str | os.PathLike) -> ProfileConfig:
    """`profile` with its checkpoints at folder/llava and folder/sam.safetensors (scratch runs, ablations, tests)."""
    import dataclasses

    folder = Path(folder)
    segmenter = dataclasses.replace(profile.section("segmenter"), checkpoint=str(folder / "sam.safetensors"))
    return dataclasses.replace(
        profile.with_section("segmenter", segmenter), llm=dataclasses.replace(profile.llm, model=str(folder / "llava"))
    )


def build_initial(cfg: TinyBuildConfig, folder: Path) -> None:
    """Random weights for every part at the recipe's sizes, written with each library's own save functions (as
    the tiny profile)."""
    from vitron_ros.core.model.heads import HeadsConfig, build_heads, save_heads
    from vitron_ros.core.model.sam_loader import TINY_PROMPT_DIM, build_sam

    from ..tiny import build_tiny_llava

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    hidden = build_tiny_llava(cfg, folder / "llava")
    torch.manual_seed(cfg.seed + 1)
    save_heads(build_heads(HeadsConfig(hidden, TINY_PROMPT_DIM, synergy_dim=cfg.synergy_dim)), folder / "llava")
    torch.manual_seed(cfg.seed + 2)
    save_state(build_sam("tiny", cfg.sam_size()).state_dict(), folder / "sam.safetensors")


def load_trainable(folder: Path, seed: int = 0, video_pooling: str | None = None) -> tuple[TrainableVitron, object]:
    """The model from a checkpoint folder through the loaders the pipeline uses; returns (model, processor)."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from vitron_ros.core.model.heads import load_heads
    from vitron_ros.core.model.sam_loader import load_sam

    processor = AutoProcessor.from_pretrained(folder / "llava")
    llava = LlavaForConditionalGeneration.from_pretrained(folder / "llava", dtype=torch.float32)
    heads = load_heads(folder / "llava")
    sam = load_sam("tiny", folder / "sam.safetensors")
    torch.manual_seed(seed + 3)  # the training-only probes and discriminator start the same every run
    return TrainableVitron(llava, heads, sam, video_pooling).train(), processor


def save_state(state: dict, path: Path) -> None:
    """Write a safetensors file atomically (a crash never leaves a truncated checkpoint behind)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        pass
    save_file(tensors, handle.name)
    readable_by_all(Path(handle.name))
    os.replace(handle.name, path)


def load_state(model: torch.nn.Module, path: Path) -> None:
    from vitron_ros.core.model.weights import load_strict, read_state_dict

    load_strict(model, read_state_dict(path), str(path))


def export_profile(model: TrainableVitron, processor, profile: ProfileConfig, facts: TrainedWith) -> None:
    """Write the trained parts where `profile` loads them: LLaVA folder (+ VITRON heads and the facts it was trained
    with) and SAM safetensors."""
    from vitron_ros.core.model.heads import save_heads

    with replacing_folder(Path(profile.llm.model)) as staging:
        model.llava.save_pretrained(staging)
        processor.save_pretrained(staging)
        save_heads(model.heads, staging)
        write_facts(staging, facts)
    save_state(model.sam.state_dict(), Path(profile.section("segmenter").checkpoint))


class Trainer:
    def __init__(self, config: TrainConfig, work_dir: str | os.PathLike, profile: ProfileConfig | None = None,
                 progress=True):
        self.config = config
        self.work_dir = Path(work_dir)
        self.profile = profile or load_profile(config.profile)
        self.progress = progress
        if config.threads:
            torch.set_num_threads(config.threads)
        init = self.work_dir / "init"
        if not (init / "sam.safetensors").is_file():
            self._say(f"building the initial (random) checkpoint -> {init}")
            staging = Path(tempfile.mkdtemp(dir=self.work_dir.parent if self.work_dir.parent.exists() else None))
            build_initial(config.architecture, staging / "init")
            self.work_dir.mkdir(parents=True, exist_ok=True)
            if init.exists():
                shutil.rmtree(init)
            shutil.move(str(staging / "init"), init)
            shutil.rmtree(staging, ignore_errors=True)
        self.model, self.processor = self._load(init)
        self.clip_sampling = ClipSampling()
        # the system turn every sample is packed with: the recipe's, else the runtime's default (every module)
        self.system_prompt = config.system_prompt or system_prompt()
        self._make_packers()
        self.scene_size = self.model.llava.config.vision_config.image_size

    def _load(self, folder: Path) -> tuple[TrainableVitron, object]:
        return load_trainable(folder, self.config.architecture.seed, self.config.video_pooling)

    def _make_packers(self) -> None:
        system = self.system_prompt
        vision = self.model.llava.config.vision_config
        grid = vision.image_size // vision.patch_size
        self.packer = Packer(self.processor.tokenizer, system, grid * grid)
        # clips: the grid of time-pooled patches, then the pooling's per-frame tokens
        clip_tokens = self.model.video_pooling.tokens(grid, self.clip_sampling.frames)
        self.clip_packer = Packer(self.processor.tokenizer, system, clip_tokens)

    def _say(self, text: str) -> None:
        if self.progress:
            print(text, flush=True)

    def stage_dir(self, name: str) -> Path:
        return self.work_dir / name

    def is_done(self, name: str) -> bool:
        return (self.stage_dir(name) / "final.safetensors").is_file()

    def run(self, names: list[str], resume: bool = True) -> dict[str, list[dict]]:
        """Run the named stages in VITRON's order, skipping finished ones; returns each stage's loss log."""
        logs = {}
        for name in [s.name for s in self.config.stages if s.name in names]:
            if self.is_done(name) and resume:
                self._say(f"stage {name}: already trained ({self.stage_dir(name) / 'final.safetensors'})")
                continue
            logs[name] = self.run_stage(self.config.stage(name), resume=resume)
        return logs

    def _start_from(self, stage: StageConfig) -> None:
        index = [s.name for s in self.config.stages].index(stage.name)
        previous_done = index > 0 and self.is_done(self.config.stages[index - 1].name)
        if stage.start == "profile" and not previous_done:  # (a full retrain goes on from its own previous stage)
            folder = Path(self.profile.llm.model).parent
            if not (folder / "sam.safetensors").is_file():
                raise VitronInputError(f"stage {stage.name!r} starts from the profile's checkpoint, and {folder} "
                                       "has no llava/ and sam.safetensors")
            pooling = read_facts(folder / "llava").video_pooling or DEFAULT_VIDEO_POOLING
            if pooling != self.config.video_pooling:
                raise VitronInputError(
                    f"stage {stage.name!r} starts from the profile's checkpoint, which pools clips with {pooling!r}; "
                    f"this recipe pools them with {self.config.video_pooling!r}: train from stage 1 (--stage all)")
            self.model, self.processor = self._load(folder)
            self._make_packers()
            return
        if index == 0:
            self.model, self.processor = self._load(self.work_dir / "init")
            return
        previous = self.config.stages[index - 1].name
        if not self.is_done(previous):
            raise VitronInputError(
                f"stage {stage.name!r} starts from stage {previous!r}, which has not finished; "
                f"run `vitron-lab train --stage {previous}` first (or --stage all)"
            )
        load_state(self.model, self.stage_dir(previous) / "final.safetensors")

    def make_batch(self, stage: StageConfig, step: int):
        """(scenes, packed batch, user prompts, clip frames or None) for update `step` of `stage`."""
        stage_index = STAGE_NAMES.index(stage.name)
        rng = np.random.default_rng([self.config.seed, stage_index, step])
        if stage.clip_share and rng.random() < stage.clip_share:
            return self.make_clip_batch(stage, rng)
        tasks = list(stage.tasks)
        weights = np.asarray([stage.tasks[t] for t in tasks], float)
        weights /= weights.sum()
        scenes, samples = [], []
        while len(scenes) < self.config.batch_scenes:
            scene = generate_scene(int(rng.integers(TRAIN_SEED_LIMIT)), size=self.scene_size)
            turns = []
            for _ in range(self.config.turns_per_scene):
                sample = make_sample(scene, tasks[int(rng.choice(len(tasks), p=weights))], rng, attempts=2)
                if sample is not None:
                    turns.append(sample)
            if turns:
                scenes.append(scene)
                samples.append(turns)
        prompts = user_prompts(scenes, rng, stage.user_prompts) if stage.user_prompts else []
        return scenes, self.packer.pack(scenes, samples), prompts, None

    def make_clip_batch(self, stage: StageConfig, rng: np.random.Generator):
        """Questions about moving-shapes clips; the frames the video encoder sees are sampled as ask_clip samples."""
        frames = CLIP_FRAMES
        sampled = self.clip_sampling.indices(frames)
        clips, samples = [], []
        while len(clips) < self.config.batch_scenes:
            clip = generate_clip(int(rng.integers(TRAIN_SEED_LIMIT)), frames=frames, size=self.scene_size)
            turns = [t for _ in range(self.config.turns_per_scene) if (t := make_video_sample(clip, sampled, rng))]
            if turns:
                clips.append(np.stack([clip.frames[i] for i in sampled]))
                samples.append(turns)
        return [None] * len(clips), self.clip_packer.pack(clips, samples), [], np.stack(clips)

    def _optimiser(self, stage: StageConfig):
        groups = self.model.groups()
        chosen = {id(p) for g in stage.train for p in groups[g]}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in chosen)
        params = [p for p in self.model.parameters() if id(p) in chosen]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        return torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=stage.lr,
        )

    def _lr(self, stage: StageConfig, step: int) -> float:
        warmup = min(self.config.warmup_steps, max(1, stage.steps // 10))
        if step < warmup:
            return stage.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, stage.steps - warmup)
        return stage.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    def run_stage(self, stage: StageConfig, resume: bool = True) -> list[dict]:
        from tqdm import tqdm

        folder = self.stage_dir(stage.name)
        folder.mkdir(parents=True, exist_ok=True)
        start = 0
        latest = folder / "latest.json"
        log_path = folder / "log.jsonl"
        if resume and latest.is_file():
            meta = json.loads(latest.read_text())
            load_state(self.model, folder / "latest.safetensors")
            optimiser = self._optimiser(stage)  # built on the restored weights, then given their Adam moments
            optimiser.load_state_dict(torch.load(folder / "latest_optim.pt", weights_only=True))
            start = int(meta["step"])
            self._say(f"stage {stage.name}: resuming at update {start}/{stage.steps}")
        else:
            self._start_from(stage)
            optimiser = self._optimiser(stage)
            log_path.unlink(missing_ok=True)
        self.model.train()
        need_masks = any(k in stage.losses for k in ("mask_signal", "mask_prompt", "aux_sam", "quality"))
        log: list[dict] = []
        running: dict[str, float] = {}
        began = time.perf_counter()
        bar = tqdm(range(start, stage.steps), initial=start, total=stage.steps, desc=f"stage {stage.name}",
                   disable=not self.progress, dynamic_ncols=True)
        for step in bar:
            scenes, batch, prompts, clips = self.make_batch(stage, step)
            for group in optimiser.param_groups:
                group["lr"] = self._lr(stage, step)
            losses = self.model(batch, scenes, prompts, stage.synergy_strength, need_masks=need_masks, clips=clips)
            total = sum(weight * losses[name] for name, weight in stage.losses.items() if name in losses)
            optimiser.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_([p for g in optimiser.param_groups for p in g["params"]], 1.0)
            optimiser.step()
            for name, value in losses.items():
                value = float(value.detach() if isinstance(value, torch.Tensor) else value)
                running[name] = 0.9 * running.get(name, value) + 0.1 * value
            if (step + 1) % self.config.log_every == 0 or step + 1 == stage.steps:
                entry = {"step": step + 1, "seconds": round(time.perf_counter() - began, 1),
                         **{k: round(v, 4) for k, v in running.items()}}
                log.append(entry)
                with log_path.open("a") as handle:
                    handle.write(json.dumps(entry) + "\n")
                bar.set_postfix({k: f"{v:.3f}" for k, v in running.items() if k in ("text", "mask_signal", "iou_signal")})
            if (step + 1) % self.config.checkpoint_every == 0 and step + 1 < stage.steps:
                save_state(self.model.state_dict(), folder / "latest.safetensors")
                torch.save(optimiser.state_dict(), folder / "latest_optim.pt")
                latest.write_text(json.dumps({"step": step + 1}))
        bar.close()
        save_state(self.model.state_dict(), folder / "final.safetensors")
        for leftover in ("latest.safetensors", "latest_optim.pt", "latest.json"):
            (folder / leftover).unlink(missing_ok=True)
        return log

    def facts(self, stages: list[str] | None = None) -> TrainedWith:
        """What the model was trained with, for its checkpoint: how replies write boxes, clip length, system turn,
        and the recipe's stages (default: all of them) with their updates."""
        names = stages if stages is not None else [s.name for s in self.config.stages]
        return TrainedWith(
            box_format=BOX_FORMAT, clip_frames=self.clip_sampling.frames, system_prompt=self.system_prompt,
            box_prompt=False,  # replies carry no box with a [SEG]: the signal alone prompts the segmenter
            video_pooling=self.config.video_pooling,
            provenance={"trained_by": "vitron-lab train", "recipe_profile": self.config.profile,
                        "stages": {s.name: s.steps for s in self.config.stages if s.name in names},
                        "scene_size": self.scene_size, "batch_scenes": self.config.batch_scenes,
                        "seed": self.config.seed})

    def export(self, profile: ProfileConfig | None = None, stage: str | None = None) -> ProfileConfig:
        """Export a finished stage (default: the last one) into `profile`'s checkpoint paths (default: the recipe's)."""
        profile = profile or self.profile
        finished = [s.name for s in self.config.stages if self.is_done(s.name)]
        if not finished:
            raise VitronInputError("no stage has finished yet; nothing to export")
        stage = stage or finished[-1]
        if stage not in finished:
            raise VitronInputError(f"stage {stage!r} has not finished; finished stages: {finished}")
        load_state(self.model, self.stage_dir(stage) / "final.safetensors")
        export_profile(self.model.eval(), self.processor, profile, self.facts(finished[: finished.index(stage) + 1]))
        self._say(f"exported stage {stage!r} -> {profile.llm.model} and {profile.section('segmenter').checkpoint}")
        return profile
