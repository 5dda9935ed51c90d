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


def test_llava_hf_chat_template_agrees_on_one_question_and_differs_where_training_did():
    """llava-hf's processor template (kept beside the fixture, with where it came from) renders a single question with
    the system text as a system message exactly as conv_vicuna_v1 does; after an answer it writes ' ' where training
    wrote '</s>', so the runtime renders conv_vicuna_v1 itself rather than through the processor's template."""
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    template = (Path(__file__).parent / "fixtures" / "llava_prompts" / "llava_hf_chat_template.jinja").read_text()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")))
    for case in CASES:
        if not case["image"]:
            continue
        messages = [{"role": "system", "content": [{"type": "text", "text": VICUNA_V1_SYSTEM}]}, *case["hf_messages"]]
        rendered = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                 add_generation_prompt=case["hf_add_generation_prompt"])
        assert rendered == case["hf_prompt_with_system"], case["name"]
        one_open_question = len(case["turns"]) == 1 and case["turns"][0][1] is None
        assert (rendered == case["prompt"]) == one_open_question, case["name"]
