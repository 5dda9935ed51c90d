"""What a checkpoint was trained with, carried beside its weights instead of assumed by code defaults.

Whoever trains a VITRON LLM (the lab's trainer, or a user fine-tuning their own) writes `vitron_facts.json` into the
checkpoint folder: how its replies write boxes, how many frames its video encoder was taught on, the system turn
it was tuned with, how its clips become tokens (video_pooling.py), whether its segmenter takes a reply's box beside
the [SEG] signal, and free-form provenance (recipe, stages, updates). The loader reads it; a profile may still
state a value, and a profile that contradicts its checkpoint is refused rather than silently obeyed. The segmenter's
prompt width travels in the VITRON heads' own metadata, a tiny SAM's sizes in its tensors' shapes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointLoadError

FACTS_FILE = "vitron_facts.json"


@dataclass(frozen=True)
class TrainedWith:
    box_format: str | None = None  # "normalized" or "pixel", as its replies write <Region> boxes
    clip_frames: int | None = None  # frames per clip its video encoder was taught on
    system_prompt: str | None = None  # the system turn it was tuned with
    # whether its segmenter learned to take a reply's <Region> box beside the [SEG] signal (None: published
    # VITRON checkpoints, which do); false: the signal alone finds the object, and the box is not passed on
    box_prompt: bool | None = None
    video_pooling: str | None = None  # how clip features became video tokens (model/video_pooling.py; None: VITRON's)
    family: str | None = None  # how it is prompted and answers (model/families.py; None: VITRON's)
    provenance: dict[str, Any] = field(default_factory=dict)  # recipe, stages, updates, ...: reported, not used


def read_facts(folder: str | Path) -> TrainedWith:
    """The folder's facts; an empty TrainedWith when it has none (published checkpoints: the profile says)."""
    path = Path(folder) / FACTS_FILE
    if not path.is_file():
        return TrainedWith()
    try:
        facts = TrainedWith(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointLoadError(f"{path} is not a readable facts file: {exc}") from None
    for name, kind in (("box_prompt", bool), ("clip_frames", int), ("box_format", str), ("system_prompt", str),
                       ("video_pooling", str), ("family", str)):
        value = getattr(facts, name)
        if value is not None and type(value) is not kind:
            raise CheckpointLoadError(f"{path}: {name} must be a {kind.__name__} or null, not {value!r}")
    return facts


def write_facts(folder: str | Path, facts: TrainedWith) -> None:
    (Path(folder) / FACTS_FILE).write_text(json.dumps(dataclasses.asdict(facts), indent=1, sort_keys=True) + "\n")


def agree(name: str, configured: Any, trained: Any, where: str) -> Any:
    """The value to use: the profile's and the checkpoint's when they agree, either one when the other is unset."""
    if configured is not None and trained is not None and configured != trained:
        raise CheckpointLoadError(
            f"{where} was trained with {name}={trained!r} but the profile sets {configured!r}; "
            f"remove it from the profile or use a checkpoint trained that way")
    return configured if configured is not None else trained
