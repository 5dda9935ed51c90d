"""LLaVA-1.5 asked the way it was trained (the "planned" family): the runtime chooses the task, asks the trained
referring and region prompts under grammars, and writes the invocation; SAM gets the box."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from vitron_ros.core.conversation import Conversation, Turn
from vitron_ros.core.model.families import FAMILIES
from vitron_ros.core.model.vitron_llm import VitronLLM
from vitron_ros.core.pipeline import VitronPipeline
from vitron_ros.core.planned_reply import request_spans
from vitron_ros.core.results import SOURCE_TEXT_BOX
from vitron_ros.core.sketch import Sketch

from .test_reply_grammar import random_requests

CASES = {c["name"]: c for c in json.loads(
    (Path(__file__).parent / "fixtures" / "llava_prompts" / "llava_prompts.json").read_text())}


@pytest.fixture(scope="module")
def llava_pipeline(tiny_pipeline):
    """The tiny LLaVA without VITRON heads, as a published LLaVA-1.5 checkpoint is, in the llava-1.5 family."""
    base = tiny_pipeline.llm
    llm = VitronLLM(base.model, base.processor, None, dataclasses.replace(base.config, family="llava-1.5"))
    return VitronPipeline(llm, tiny_pipeline.specialists, "tiny-llava-1.5")


@pytest.fixture()
def asked(llava_pipeline, monkeypatch):
    """Every conversation the planner renders, as text."""
    llm = llava_pipeline.llm
    seen = []
    original = llm.build_prompt

    def recording(conversation, encoding):
        seen.append(conversation.render(eos=llm.tokenizer.eos_token))
        return original(conversation, encoding)

    monkeypatch.setattr(llm, "build_prompt", recording)
    return seen


def test_the_trained_prompts_are_llavas_own():
    family = FAMILIES["llava-1.5"]
    assert family.referring_prompt.format(phrase="the red mug") == CASES["referring_bbox"]["turns"][0][0]
    assert family.region_prompt.format(box="[0.12, 0.3, 0.45, 0.88]") == CASES["region_caption"]["turns"][0][0]
    for name in ("referring_bbox", "region_caption"):
        conversation = Conversation(system=family.system_prompt, style=family.prompt_style,
                                    turns=[Turn(user=CASES[name]["turns"][0][0])])
        assert conversation.render(eos="</s>") == CASES[name]["prompt"]


def test_a_request_to_segment_reaches_sam_with_the_box_llava_gave(llava_pipeline, scene, asked):
    result, conversation = llava_pipeline(scene, "segment the red mug", task="segmentation")
    assert result.errors == [], result.errors
    referring = [p for p in asked if "Please provide the bounding box coordinate" in p]
    assert len(referring) == 1 and referring[0].startswith(FAMILIES["llava-1.5"].system_prompt + " USER: <image>\n")
    masks = [m for m in result.masks if m.invocation_index is not None]
    assert masks and masks[0].source == SOURCE_TEXT_BOX and masks[0].mask.any()
    assert conversation.turns[-1].assistant.startswith("<module>segmenter</module> <instruction>segmentation: ")


def test_free_requests_parse_and_sketches_are_described(llava_pipeline, scene, asked):
    for request in random_requests(30, seed=5):
        result, _ = llava_pipeline(scene, request)
        assert result.errors == [], (request, result.errors)
    asked.clear()
    result, _ = llava_pipeline(scene, "what is this?", [Sketch.box(120, 60, 180, 110)])
    assert result.errors == []
    assert any(p.endswith("USER: <image>\nPlease provide a short description for this region: [0.6, 0.5, 0.9, 0.75]. "
                          "ASSISTANT:") for p in asked)
    choice = [p for p in asked if "Which one of these does the request ask for: answer, segmentation," in p]
    assert choice and all("<sketch>" not in p for p in choice)  # the drawn region is given by its description


def test_request_spans_are_the_phrases_a_request_can_name():
    spans = request_spans("segment the red mug, please.")
    assert spans[0] == "segment the red mug please" and "the red mug" in spans and "red" in spans
