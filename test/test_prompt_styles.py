"""Prompts as the checkpoint was trained: LLaVA-1.5's conv_vicuna_v1 byte for byte against LLaVA's own
conversation.py (test/fixtures/llava_prompts, made by its make_llava_prompts.py from LLaVA's repository)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vitron_ros.core.conversation import VICUNA_V1_SYSTEM, Conversation, Turn

CASES = json.loads((Path(__file__).parent / "fixtures" / "llava_prompts" / "llava_prompts.json").read_text())


@pytest.mark.parametrize("case", [c for c in CASES if c["image"]], ids=lambda c: c["name"])
def test_vicuna_v1_prompts_match_llava_byte_for_byte(case):
    turns = [Turn(user=user, assistant=answer) for user, answer in case["turns"]]
    conversation = Conversation(system=VICUNA_V1_SYSTEM, turns=turns, style="vicuna_v1")
    assert conversation.render(eos="</s>") == case["prompt"]


def test_an_unknown_style_is_refused():
    with pytest.raises(ValueError, match="prompt style 'chatml'"):
        Conversation(style="chatml").render(eos="</s>")
