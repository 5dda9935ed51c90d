"""Training recipe: YAML -> frozen dataclasses, unknown keys rejected by name (as profiles are)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vitron_ros.core.config import build_checked, read_yaml
from vitron_ros.core.errors import VitronInputError
from vitron_ros.core.model.video_pooling import DEFAULT_VIDEO_POOLING, VIDEO_POOLINGS

from ..shapes.instructions import TASKS
from ..shapes.video_instructions import VIDEO_TASKS
from ..tiny import TinyBuildConfig
from .diffusion_training import DiffusionTrainConfig
from .model import MODULE_GROUPS
from .tracker_training import TrackerTrainConfig
from .video_generator_training import VideoGeneratorTrainConfig

LOSSES = ("text", "aux_vision", "aux_sam", "mask_signal", "mask_prompt", "quality", "synergy_adv", "synergy_spec")
# VITRON's five stages in order, then `video`: questions about clips through the video encoder (the paper trains
# video data within its stages; here the still-image model is taught clips afterwards, as a sixth stage), then
# `edit`: the editor's and generator's invocations, taught to a trained model (it may start from the shipped one)
STAGE_NAMES = ("align", "invocation", "decoder", "grounding", "synergy", "video", "edit")
STARTS = ("previous", "profile")


@dataclass(frozen=True)
class StageConfig:
    name: str  # one of STAGE_NAMES
    steps: int  # optimiser updates
    tasks: dict[str, float]  # task -> sampling weight of the turns packed per scene
    train: tuple[str, ...]  # parameter groups updated (MODULE_GROUPS); the rest stay frozen
    losses: dict[str, float]  # loss -> weight
    lr: float = 1e-3
    user_prompts: int = 0  # point/box/scribble segmenter prompts per scene (sketch path)
    synergy_strength: float = 0.0  # gradient-reversal strength of the task discriminator (0: synergy off)
    clip_share: float = 0.0  # fraction of updates that are batches of clips (their tasks: clip_tasks)
    clip_tasks: dict[str, float] | None = None  # task -> weight for clip batches, e.g. {video_qa: 1.0}
    # "previous": the weights the stage before it left; "profile": those, or when this work dir has no finished
    # previous stage, the profile's exported checkpoint (teach a new task to the shipped model, no full retrain)
    start: str = "previous"


@dataclass(frozen=True)
class TrainConfig:
    profile: str  # the runtime profile whose checkpoint paths receive the export
    stages: tuple[StageConfig, ...]
    architecture: TinyBuildConfig = TinyBuildConfig()  # sizes of the random model training starts from
    system_prompt: str | None = None  # the system turn samples are packed with (None: the runtime's default)
    video_pooling: str = DEFAULT_VIDEO_POOLING  # how clip features become video tokens (vitron_ros...video_pooling)
    seed: int = 0
    batch_scenes: int = 16  # images per update
    turns_per_scene: int = 4  # single-turn samples packed on each image's shared prefix
    weight_decay: float = 0.01
    warmup_steps: int = 50
    checkpoint_every: int = 100  # updates between resumable checkpoints
    log_every: int = 20
    threads: int = 0  # torch CPU threads; 0 = torch's default
    tracker: TrackerTrainConfig | None = None  # the SAM 2 tracker's own training (`--stage tracker`), if any
    # the generator/editor's own training (`--stage diffusion`) and its signal projector's (`--stage signal`)
    diffusion: DiffusionTrainConfig | None = None
    # the video generator's (`--stage video_generator`): AnimateDiff parts trained from the editor on motion clips
    video_generator: VideoGeneratorTrainConfig | None = None

    def stage(self, name: str) -> StageConfig:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise VitronInputError(f"stage {name!r} is not in the recipe; it has {[s.name for s in self.stages]}")


def stage_from_dict(raw: dict, where: str) -> StageConfig:
    stage = build_checked(StageConfig, raw, where)
    if stage.name not in STAGE_NAMES:
        raise VitronInputError(f"{where}.name: expected one of {STAGE_NAMES}, got {stage.name!r}")
    for task in stage.tasks:
        if task not in TASKS:
            raise VitronInputError(f"{where}.tasks: unknown task {task!r}; tasks are {TASKS}")
    for task in stage.clip_tasks or {}:
        if task not in VIDEO_TASKS:
            raise VitronInputError(f"{where}.clip_tasks: unknown task {task!r}; clip tasks are {VIDEO_TASKS}")
    if not 0.0 <= stage.clip_share <= 1.0 or (stage.clip_share > 0) != bool(stage.clip_tasks):
        raise VitronInputError(f"{where}: clip_share must be in [0, 1] and set together with clip_tasks")
    for group in stage.train:
        if group not in MODULE_GROUPS:
            raise VitronInputError(f"{where}.train: unknown group {group!r}; groups are {MODULE_GROUPS}")
    for loss in stage.losses:
        if loss not in LOSSES:
            raise VitronInputError(f"{where}.losses: unknown loss {loss!r}; losses are {LOSSES}")
    if stage.start not in STARTS:
        raise VitronInputError(f"{where}.start: expected one of {STARTS}, got {stage.start!r}")
    if stage.steps < 1 or not stage.tasks:
        raise VitronInputError(f"{where}: needs steps >= 1 and at least one task")
    return StageConfig(**{**stage.__dict__, "train": tuple(stage.train)})


def load_recipe(path: str | os.PathLike) -> TrainConfig:
    path = Path(path)
    raw = read_yaml(path, "training recipe")
    if not isinstance(raw, dict):
        raise VitronInputError(f"training recipe {path}: expected a mapping")
    raw = dict(raw)
    stages = raw.pop("stages", None)
    if not isinstance(stages, list) or not stages:
        raise VitronInputError(f"training recipe {path}: 'stages' must be a non-empty list")
    parsed = tuple(stage_from_dict(s, f"{path.name}: stages[{i}]") for i, s in enumerate(stages))
    raw["architecture"] = build_checked(TinyBuildConfig, raw.get("architecture") or {}, f"{path.name}: architecture")
    if raw.get("tracker") is not None:
        tracker = build_checked(TrackerTrainConfig, raw["tracker"], f"{path.name}: tracker")
        raw["tracker"] = TrackerTrainConfig(**{**tracker.__dict__, "prompt_mix": tuple(tracker.prompt_mix)})
    if raw.get("diffusion") is not None:
        diffusion = build_checked(DiffusionTrainConfig, raw["diffusion"], f"{path.name}: diffusion")
        raw["diffusion"] = DiffusionTrainConfig(**{
            **diffusion.__dict__, "vae_channels": tuple(diffusion.vae_channels),
            "unet_channels": tuple(diffusion.unet_channels)})
    if raw.get("video_generator") is not None:
        raw["video_generator"] = build_checked(VideoGeneratorTrainConfig, raw["video_generator"],
                                               f"{path.name}: video_generator")
    if raw.get("video_pooling", DEFAULT_VIDEO_POOLING) not in VIDEO_POOLINGS:
        raise VitronInputError(f"training recipe {path}: video_pooling {raw['video_pooling']!r} is not one of "
                               f"{sorted(VIDEO_POOLINGS)}")
    order = [STAGE_NAMES.index(s.name) for s in parsed]
    if order != sorted(order) or len(set(order)) != len(order):
        raise VitronInputError(f"training recipe {path}: stages must be distinct and in VITRON's order {STAGE_NAMES}")
    return build_checked(TrainConfig, {**raw, "stages": parsed}, path.name)
