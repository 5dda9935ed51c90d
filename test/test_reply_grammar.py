"""Replies that parse by construction: the invocation grammar from the registry, decoded under with llguidance."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from vitron_ros.core.geometry import Letterbox
from vitron_ros.core.invocation import parse_box, parse_reply
from vitron_ros.core.reply_grammar import ReplyGrammar, axis_lower_bounds

MODULES = {"segmenter": ("segmentation", "everything"), "editor": ("remove", "add")}
PROMPTED = {"segmenter:segmentation", "editor:remove"}

_WORDS = ("segment", "the", "red", "blue", "mug", "circle", "square", "left", "of", "what", "is", "this", "show",
          "remove", "make", "it", "green", "count", "objects", "where", "below", "triangle", "describe", "image")


def random_requests(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(_WORDS, size=rng.integers(2, 9))) + rng.choice(["", "?", "."]) for _ in range(count)]


def test_axis_bounds_match_the_parser_on_a_letterboxed_image():
    """The grammar's box bounds are exactly the boxes parse_box accepts (ordered, a pixel inside the image)."""
    for hw in [(480, 640), (60, 200), (300, 300)]:
        letterbox = Letterbox(*hw)
        x_offset, y_offset = letterbox.offset_xy
        bounds = axis_lower_bounds(letterbox.side, y_offset, letterbox.height)
        for first in range(0, 100, 7):
            for second in range(first + 1, 101, 3):
                box = f"[0.00, {first / 100:.2f}, 1.00, {second / 100:.2f}]"
                accepted = parse_box(box, letterbox, "normalized")[0] is not None
                assert accepted == (first in bounds and second >= bounds[first]), (hw, box)


def test_exports_for_servers_accept_what_the_parser_reads():
    grammar = ReplyGrammar(MODULES, "segmenter", prompted=PROMPTED)
    reply = ("It is <p> the red mug </p> [SEG] and <module>editor</module> <instruction>remove: the cup"
             "</instruction> <Region>[0.10, 0.20, 0.30, 0.40]</Region>.")
    assert re.fullmatch(grammar.regex(), reply)
    assert not re.fullmatch(grammar.regex(), "<module>painter</module> <instruction>x: y</instruction>")
    gbnf = grammar.gbnf()
    assert gbnf.startswith("root ::= items") and 'seg ::= "[SEG]"' in gbnf
    assert '"<module>editor</module> <instruction>remove: "' in gbnf
    required = ReplyGrammar(MODULES, "segmenter", require="segmentation", prompted=PROMPTED).gbnf()
    assert required.startswith("root ::= lead required items | required items")
    with pytest.raises(ValueError, match="not one of the segmenter's tasks"):
        ReplyGrammar(MODULES, "segmenter", require="remove")
    with pytest.raises(ValueError, match="plain words"):
        ReplyGrammar({"segmenter": ("seg\"mentation",)}, "segmenter")


@pytest.fixture(scope="module")
def tiny_llm(tiny_pipeline):
    return tiny_pipeline.llm


def _generate_replies(pipeline, requests, image, grammar_on: bool, task: str | None = None, heads: int = 0):
    """Replies of the pipeline's LLM to `requests` about `image` (encoded once), with the grammar on or off.

    `heads` > 0: the requests are split among that many output heads redrawn at random (N(0, 1), seeded), so greedy
    decoding wanders like sampling would (the built head's 0.02 init mostly stops at EOS); the rows of tokens that
    write tags are drawn 2.5 times larger, so these random models start tags often, as a model half-taught the
    format would.
    """
    import torch

    from vitron_ros.core.conversation import Conversation, Turn

    llm = pipeline.llm
    original = llm.config
    head = llm.model.get_output_embeddings().weight
    saved = head.detach().clone()
    vocab = llm.tokenizer.convert_ids_to_tokens(list(range(len(llm.tokenizer))))
    tag_rows = [i for i, piece in enumerate(vocab) if i < head.shape[0] and piece is not None
                and any(mark in piece for mark in ("<", ">", "[SEG]", "Region", "module", "instruction"))]
    llm.config = dataclasses.replace(original, grammar=grammar_on)
    try:
        encoding = llm.encode_image(image)
        grammar = pipeline.reply_grammar(image.shape[:2], task)
        system = llm.config.system_prompt or "system"
        for index, request in enumerate(requests):
            if heads and index % max(1, len(requests) // heads) == 0:
                with torch.no_grad():
                    head.copy_(torch.randn(head.shape, generator=torch.Generator().manual_seed(index)))
                    head[tag_rows] *= 2.5
            prompt = llm.build_prompt(Conversation(system=system, turns=[Turn(user=request)]), encoding)
            yield llm.generate(prompt, grammar=grammar)
    finally:
        llm.config = original
        with torch.no_grad():
            head.copy_(saved)


@pytest.mark.slow  # about a minute: 2,000 generations
def test_tiny_llm_replies_parse_with_the_grammar_and_break_without_it(tiny_pipeline, scene):
    """1,000 random requests to the random-weight tiny LLM: no format error under the grammar; without it, on the
    first 500 (the same random heads), some (6 when measured)."""
    requests = random_requests(1000)
    hw = scene.shape[:2]
    on_errors, on_calls = [], 0
    for reply, ids in _generate_replies(tiny_pipeline, requests, scene, grammar_on=True, heads=20):
        parsed = parse_reply(reply, hw, tiny_pipeline.modules, "normalized", grounder=tiny_pipeline.grounder)
        on_errors.extend(parsed.errors)
        on_calls += len(parsed.invocations)
        assert parsed.seg_count == ids.count(tiny_pipeline.llm.seg_token_id)  # [SEG] is the token, never spelled
    assert on_errors == []
    assert on_calls >= 10  # the random heads do call specialists under the grammar (16 of 1,000), so tags are written
    off_errors = []
    for reply, _ in _generate_replies(tiny_pipeline, requests[:500], scene, grammar_on=False, heads=10):
        off_errors.extend(parse_reply(reply, hw, tiny_pipeline.modules, "normalized",
                                      grounder=tiny_pipeline.grounder).errors)
    print(f"grammar on, 1,000 requests: {on_calls} calls, 0 format errors; off, the first 500: {len(off_errors)} errors")
    assert off_errors, "free decoding never broke the format: this test could not fail"


def test_a_request_to_segment_always_reaches_the_segmenter(tiny_pipeline, scene):
    """With task='segmentation', every reply calls the segmenter with a prompt, and a mask comes back."""
    hw = scene.shape[:2]
    for reply, _ in _generate_replies(tiny_pipeline, random_requests(100, seed=1), scene, True, "segmentation"):
        parsed = parse_reply(reply, hw, tiny_pipeline.modules, "normalized", grounder=tiny_pipeline.grounder)
        assert parsed.errors == ()
        first = parsed.invocations[0]
        assert (first.module, first.task) == ("segmenter", "segmentation")
        assert first.seg_index is not None or first.box_xyxy is not None
    for request in random_requests(5, seed=2):
        result, _ = tiny_pipeline(scene, request, task="segmentation")
        assert result.errors == [], result.errors
        assert any(m.invocation_index is not None for m in result.masks)


def test_the_profile_setting_turns_the_grammar_off(tiny_pipeline, scene):
    llm = tiny_pipeline.llm
    grammar = tiny_pipeline.reply_grammar(scene.shape[:2])
    calls = []
    original = llm.grammar_decoding
    llm.grammar_decoding = lambda: calls.append(1) or original()
    try:
        list(_generate_replies(tiny_pipeline, ["what is this?"], scene, grammar_on=False))
        assert calls == []
        list(_generate_replies(tiny_pipeline, ["what is this?"], scene, grammar_on=True))
        assert calls == [1]
    finally:
        del llm.grammar_decoding
    assert grammar == tiny_pipeline.reply_grammar(scene.shape[:2])  # hashable and equal: compiled once, cached


@pytest.mark.slow  # one to two minutes: 2,000 generations
def test_shapes_llm_replies_parse_with_the_grammar_and_break_without_it():
    """The shipped shapes LLM on 1,000 random word-salad requests: 0 format errors under the grammar; free decoding
    breaks the format in some (54 of 1,000 replies, 109 errors, when measured: bench/bench_grammar.py)."""
    from vitron_ros.core.image_io import load_image
    from vitron_ros.core.pipeline import VitronPipeline

    from .conftest import DEMO_IMAGE

    pipeline = VitronPipeline.from_profile("shapes", progress=lambda *_: None)
    image = load_image(DEMO_IMAGE)
    requests = random_requests(1000, seed=7)
    counts = {}
    for on in (True, False):  # free decoding on the first 300: enough to show the format breaking
        errors = 0
        for reply, _ in _generate_replies(pipeline, requests if on else requests[:300], image, grammar_on=on):
            errors += len(parse_reply(reply, image.shape[:2], pipeline.modules, "normalized", pipeline.grounder).errors)
        counts[on] = errors
    assert counts[True] == 0
    assert counts[False] > 0, "free decoding never broke the format: this test could not fail"
