"""Chat prompt (LLaVA-1.5 / Vicuna v1 template) and multi-turn conversation state."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IMAGE_TOKEN = "<image>"
SKETCH_TOKEN = "<sketch>"
# LLaVA-1.5's training system turn (LLaVA's conversation.py, conv_vicuna_v1; test/fixtures/llava_prompts)
VICUNA_V1_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                    "helpful, detailed, and polite answers to the user's questions.")

@dataclass(frozen=True)
class Region:
    """A user's sketch turned into a mask: where the <sketch> placeholder points in the image."""

    mask: np.ndarray  # (H, W) bool, original image pixels
    box_xyxy: tuple[float, float, float, float]  # tight box of the mask, pixels, XYXY
    kind: str  # "point", "box", "scribble" or "mask": what the user drew


@dataclass
class Turn:
    user: str  # request text; each SKETCH_TOKEN in it stands for one entry of `regions`, in order
    regions: tuple[Region, ...] = ()
    assistant: str | None = None  # raw reply (tags kept), None while the turn is being answered


@dataclass
class Conversation:
    """Turns about one image. The image placeholder goes in the first user turn only."""

    system: str = ""  # the checkpoint's system turn (families.py), or VITRON's listing the loaded specialists
    turns: list[Turn] = field(default_factory=list)
    image_hw: tuple[int, int] | None = None  # the image this conversation is about
    style: str = "vitron"  # how turns are joined (PROMPT_STYLES): a property of the checkpoint it is rendered for
    image_prefix: str = f"{IMAGE_TOKEN}\n"  # what stands before the first question (the checkpoint's, too)

    @property
    def regions(self) -> list[Region]:
        return [r for turn in self.turns for r in turn.regions]

    def render(self, eos: str) -> str:
        """Prompt text up to the open assistant turn, in the checkpoint's style."""
        if self.style not in PROMPT_STYLES:
            raise ValueError(f"prompt style {self.style!r}: expected one of {sorted(PROMPT_STYLES)}")
        return PROMPT_STYLES[self.style](self, eos)


def _render_vitron(conversation: Conversation, eos: str) -> str:
    """VITRON's checkpoints (the lab's): Vicuna v1 roles, a space before each USER turn, the image on the first."""
    parts = [conversation.system]
    for index, turn in enumerate(conversation.turns):
        user = f"{conversation.image_prefix}{turn.user}" if index == 0 else turn.user
        parts.append(f" USER: {user} ASSISTANT:")
        if turn.assistant is not None:
            parts.append(f" {turn.assistant}{eos}")
    return "".join(parts)


def _render_vicuna_v1(conversation: Conversation, eos: str) -> str:
    """LLaVA's conv_vicuna_v1 (SeparatorStyle.TWO) byte for byte: system, " ", then "ROLE: message" closed by " "
    after a user turn and by EOS after an answer; the image token and a newline before the first question."""
    text = conversation.system + " "
    for index, turn in enumerate(conversation.turns):
        user = f"{conversation.image_prefix}{turn.user}" if index == 0 else turn.user
        text += f"USER: {user} ASSISTANT:"
        if turn.assistant is not None:
            text += f" {turn.assistant}{eos}"
    return text


PROMPT_STYLES = {"vitron": _render_vitron, "vicuna_v1": _render_vicuna_v1}

