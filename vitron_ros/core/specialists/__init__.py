"""The specialist registry: the one place that knows a specialist.

An entry says which profile section configures the specialist, how to build it (and how to fetch its
published weights), its tasks with the sentence the LLM's system prompt gives each, whether a
task is grounded by the segmenter first, and the kind of output it returns. The pipeline, the system prompt, the
result and the node's published topics all read this table, so adding a specialist is a new file plus an entry
here; nothing else names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .base import Frame, Specialist, SpecialistCall, SpecialistOutput
from .diffusion import EditorConfig, GeneratorConfig
from .segmenter import SegmenterConfig
from .tracker import TrackerConfig
from .video_generator import VideoGeneratorConfig


@dataclass(frozen=True)
class TaskSpec:
    description: str  # what the task does, for the LLM's system prompt
    grounded: bool = False  # the grounding specialist turns the call's [SEG] / box into a mask first (call.mask)
    prompted: bool = False  # the specialist itself needs a [SEG] or a box for the call (the grounder's segmentation)
    # the instruction is free text the runtime can write from a request (planned_reply.py); False: it needs structure
    # only a trained VITRON LLM writes (layout's <p> boxes, add's box of where)
    plannable: bool = True
    whole_image: bool = False  # takes no prompt and finds every object (its masks are marked "everything")

    @property
    def needs_prompt(self) -> bool:
        """A call of this task is useless without a [SEG] or a box: the reply grammar always gives it one."""
        return self.grounded or self.prompted


@dataclass(frozen=True)
class SpecialistEntry:
    name: str  # the module name the LLM writes in <module>...</module>, and the profile section's key
    config: type  # frozen dataclass of its profile section (unknown keys raise; `paths` expand; `check(where)`)
    build: Callable[..., Specialist]  # (section, profile, device, progress) -> the loaded specialist
    tasks: Mapping[str, TaskSpec]
    output: str  # output kind (results.OUTPUT_KINDS): "masks", "tracks", "images" or "videos"
    summary: str = ""  # what the specialist is for, one phrase for the system prompt
    required: bool = False  # every profile must configure it
    grounds: bool = False  # turns sketches, grounded phrases and bare [SEG] into masks (exactly one entry)
    grounding_task: str = ""  # the grounding entry's task those masks are made with
    follows_clip: bool = False  # in a clip query, every grounded mask is also sent to it (task = its first task)
    topic: str = ""  # images and videos: the node topic they publish on (~/edited, ~/generated, ~/generated_video)
    long_running: bool = False  # runs outside the pipeline's model lock, under its own (diffusion: seconds)
    fetch: Callable[[Any, Any], None] | None = None  # (section, profile): download published weights once
    extra: Mapping[str, Any] = field(default_factory=dict)


def _segmenter(section, profile, device, progress=print) -> Specialist:
    from .segmenter import SamSegmenter

    return SamSegmenter.from_profile(profile, device, progress=progress)


def _tracker(section, profile, device, progress=print) -> Specialist:
    from .tracker import Sam2Tracker

    return Sam2Tracker.from_profile(profile, device, progress=progress)


def _editor(section, profile, device, progress=print) -> Specialist:
    from .editor import DiffusionEditor

    return DiffusionEditor.from_config(section, profile, device, progress=progress)


def _generator(section, profile, device, progress=print) -> Specialist:
    from .generator import DiffusionGenerator

    return DiffusionGenerator.from_config(section, profile, device, progress=progress)


def _video_generator(section, profile, device, progress=print) -> Specialist:
    from .video_generator import VideoGenerator

    return VideoGenerator.from_config(section, profile, device, progress=progress)


def _fetch_sam(section, profile) -> None:
    from ..fetch import fetch_file

    fetch_file(f"SAM {section.arch}", section.checkpoint, section.url, profile.name)


def _fetch_hub(attribute: str, what: str, pinned: tuple[str, ...] | None = None) -> Callable:
    """Fetch the hub ids in the comma-separated `attribute`s; the section's revision pins those in `pinned` (all)."""

    def fetch(section, profile) -> None:
        from ..fetch import fetch_hub_model

        for name in attribute.split(","):
            if (model := getattr(section, name)) is not None:
                fetch_hub_model(what, model, section.revision if pinned is None or name in pinned else None)

    return fetch


EDIT_TASKS = {
    "remove": TaskSpec("remove: the object (filled with what is behind it)", grounded=True),
    "replace": TaskSpec("replace: the object with another, e.g. 'the mug with a bottle'", grounded=True),
    "recolour": TaskSpec("recolour: the object to a colour, e.g. 'the box to blue'", grounded=True),
    "move": TaskSpec("move: the object to the left, right, up or down", grounded=True),
    "add": TaskSpec("add: a new object inside the <Region> box", plannable=False),
    "instruct": TaskSpec("instruct: a whole-image edit, e.g. 'make it night'"),
}

SPECIALISTS: dict[str, SpecialistEntry] = {
    "segmenter": SpecialistEntry(
        "segmenter", SegmenterConfig, _segmenter,
        {"segmentation": TaskSpec("segmentation: the object to segment", prompted=True),
         "everything": TaskSpec("everything: all objects", whole_image=True)},
        output="masks", summary="segments objects", required=True, grounds=True, grounding_task="segmentation",
        fetch=_fetch_sam,
    ),
    "tracker": SpecialistEntry(
        "tracker", TrackerConfig, _tracker,
        {"tracking": TaskSpec("tracking: the object to follow through the video", grounded=True)},
        output="tracks", summary="follows an object through the video", follows_clip=True,
        fetch=_fetch_hub("model", "SAM 2 tracker"),
    ),
    "editor": SpecialistEntry(
        "editor", EditorConfig, _editor, EDIT_TASKS,
        output="images", summary="edits the image; pixels outside the edited region stay as they are",
        topic="edited", long_running=True, fetch=_fetch_hub("model,instruct_model", "editor"),
    ),
    "generator": SpecialistEntry(
        "generator", GeneratorConfig, _generator,
        {"generation": TaskSpec("generation: a description of a new image"),
         "layout": TaskSpec("layout: <p> phrase </p> <Region>[x1, y1, x2, y2]</Region> for each object to draw",
                            plannable=False)},
        output="images", summary="draws a new image", topic="generated", long_running=True,
        fetch=_fetch_hub("model", "generator"),
    ),
    "video_generator": SpecialistEntry(
        "video_generator", VideoGeneratorConfig, _video_generator,
        {"text_to_video": TaskSpec("text_to_video: a description of a new clip, e.g. 'a red circle moving left'"),
         "image_to_video": TaskSpec("image_to_video: how the image should move, e.g. 'the cup moves to the left'")},
        output="videos", summary="makes a short video clip", topic="generated_video", long_running=True,
        fetch=_fetch_hub("model,motion_adapter,image_controlnet", "video generator", pinned=("model",)),
    ),
}


def grounding_specialist(names) -> str:
    """The name of the entry that grounds sketches, phrases and [SEG] among `names`."""
    found = [name for name in names if SPECIALISTS[name].grounds]
    if len(found) != 1:
        raise ValueError(f"exactly one loaded specialist must ground masks, found {found}")
    return found[0]


def system_prompt(names=None) -> str:
    """VITRON's system turn, describing the specialists `names` (default: every registered one, as the tiny
    tokenizer's corpus and the lab's trainer use it). Built on demand: nothing is computed at import time."""
    modules = module_descriptions(SPECIALISTS if names is None else names)
    return (
        "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the human's questions. The assistant can see the image and calls pixel "
        "specialists by writing <module>NAME</module> <instruction>TASK: WHAT</instruction> <Region>[x1, y1, x2, y2]"
        f"</Region>, with box coordinates between 0 and 1. Modules: {modules}. "
        "To point at objects while answering, it writes <p> phrase </p> <Region>[x1, y1, x2, y2]</Region>."
    )


def module_descriptions(names) -> str:
    """The system prompt's module list, from the registry: 'segmenter (segments objects; tasks: ...)'."""
    parts = []
    for name in names:
        entry = SPECIALISTS[name]
        tasks = "; ".join(spec.description for spec in entry.tasks.values())
        parts.append(f"{name} ({entry.summary}; tasks: {tasks})")
    return "; ".join(parts)


__all__ = [
    "SPECIALISTS", "Frame", "Specialist", "SpecialistCall", "SpecialistEntry", "SpecialistOutput", "TaskSpec",
    "grounding_specialist", "module_descriptions", "system_prompt",
]
