"""Checkpoint families: how a published LLM was trained to be asked, and how it answers. One registry.

Prompting is a property of the checkpoint, not of the pipeline. A family names the prompt style and system turn it was
fine-tuned under, what stands before the first question, whether its images are letterboxed, how it writes boxes,
where its [SEG] signal is read, and how a request becomes the reply the parser reads:

- "invocation": the LLM writes `<module>` calls, `<p>` phrases and [SEG] itself (VITRON's checkpoints, the lab's);
- "grounded": the LLM writes text with `<p> phrase </p> [SEG]` and bare [SEG] ("Sure, it is [SEG]."), no calls
  (GLaMM, LISA);
- "planned": the LLM was never taught to call anything; the runtime chooses the task, asks each phrase with the
  prompt the checkpoint was trained on for boxes, and writes the invocation from its answers (LLaVA-1.5;
  core/planned_reply.py).

A checkpoint's vitron_facts.json names its family; a published checkpoint without one gets it from the profile
(`llm.family`). A new family is an entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..conversation import IMAGE_TOKEN, VICUNA_V1_SYSTEM
from ..errors import CheckpointLoadError

REPLY_KINDS = ("invocation", "grounded", "planned")


@dataclass(frozen=True)
class CheckpointFamily:
    name: str
    prompt_style: str  # conversation.PROMPT_STYLES key
    system_prompt: str | None  # the system turn it was tuned with; None: VITRON's, listing the loaded specialists
    reply: str  # REPLY_KINDS: who writes the invocation (see the module docstring)
    image_prefix: str = f"{IMAGE_TOKEN}\n"  # what stands before the first question
    letterbox: bool = True  # images padded to a square (LLaVA-1.5's "pad"); False: the image processor's own resize
    box_style: str = "fixed2"  # reply_grammar.BOX_STYLES: how its boxes' numbers are written
    signal_offset: int = 0  # [SEG] signal: the hidden state at the token (0) or at the one that predicts it (-1)
    # prompts it was trained with, filled by str.format: referring -> box ({phrase}); region -> caption ({box})
    referring_prompt: str = ""
    region_prompt: str = ""
    # (downloaded source folders, the profile's llm.model folder, progress) -> writes it: for families whose published
    # layout this project converts (llm.source names the hub ids); None: loaded as published
    convert: Callable[[list[Path], Path, Callable], None] | None = None


def _convert_glamm(sources: list[Path], model_folder: Path, progress) -> None:
    from .glamm import convert_glamm

    if len(sources) != 2:
        raise CheckpointLoadError(f"llm.source for GLaMM names its checkpoint and its CLIP tower, got {len(sources)}")
    convert_glamm(sources[0], sources[1], model_folder.parent, progress)


FAMILIES: dict[str, CheckpointFamily] = {
    "vitron": CheckpointFamily("vitron", "vitron", None, "invocation"),
    # LLaVA-1.5 (llava-hf/llava-1.5-*-hf): conv_vicuna_v1; grounding data "[x1, y1, x2, y2]" with round(v, 2), 0-1 of
    # the padded square; prompts quoted from llava_v1_5_mix665k.json (test/fixtures/llava_prompts/sources.md)
    "llava-1.5": CheckpointFamily(
        "llava-1.5", "vicuna_v1", VICUNA_V1_SYSTEM, "planned", box_style="round2",
        referring_prompt="Please provide the bounding box coordinate of the region this sentence describes: {phrase}.",
        region_prompt="Please provide a short description for this region: {box}.",
    ),
    # GLaMM (MBZUAI/GLaMM-*): llava_v1's system turn, its image sentence, CLIP's own resize, the [SEG] signal read
    # one token early (model/glamm.py; test/fixtures/glamm/README.md)
    "glamm": CheckpointFamily(
        "glamm", "vicuna_v1",
        "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the human's questions.",
        "grounded",
        image_prefix=f"The <im_start>{IMAGE_TOKEN}<im_end> provides an overview of the picture.\n",
        letterbox=False, signal_offset=-1, convert=_convert_glamm,
    ),
}


def checkpoint_family(name: str | None, where: str = "LLM checkpoint") -> CheckpointFamily:
    """The named family (None: VITRON's); an unknown name is refused with the known ones."""
    name = name or "vitron"
    if name not in FAMILIES:
        raise CheckpointLoadError(f"{where}: unknown checkpoint family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]
