"""End to end on the tiny profile, and the grounded-conversation and region paths."""

import numpy as np
import pytest

from vitron_ros.core.conversation import Conversation, Turn
from vitron_ros.core.errors import CheckpointLoadError, QueryCancelled, VitronInputError
from vitron_ros.core.geometry import Letterbox
from vitron_ros.core.masks import rle_decode
from vitron_ros.core.model.vitron_llm import VitronLLM
from vitron_ros.core.pipeline import VitronPipeline
from vitron_ros.core.results import (
    SOURCE_EMBEDDING,
    SOURCE_EMBEDDING_AND_BOX,
    SOURCE_EVERYTHING,
    SOURCE_TEXT_BOX,
    SOURCE_USER_PROMPT,
)
from vitron_ros.core.sketch import Sketch
from vitron_ros.core.specialists import Frame, SpecialistCall, system_prompt


def test_query_end_to_end_returns_full_size_masks_and_timings(tiny_pipeline, scene):
    sketches = [Sketch.point(60, 45), Sketch.box(120, 60, 180, 110), Sketch.scribble([[35, 25], [80, 60]])]
    result, conversation = tiny_pipeline(scene, "what are these?", sketches)
    assert isinstance(result.answer, str) and isinstance(result.raw_reply, str)
    assert [m.source for m in result.masks[:3]] == [SOURCE_USER_PROMPT] * 3
    for m in result.masks:
        assert m.mask.shape == scene.shape[:2] and m.mask.dtype == bool and m.mask.any()
        assert np.array_equal(rle_decode(m.rle), m.mask)
    box_region = result.masks[1].mask
    assert not box_region[:, :120].any() and not box_region[:60].any()  # a box region stays inside its box
    for stage in ("segmenter_prompts", "vision_encoder", "prompt", "llm_generate", "parse", "total"):
        assert result.timings[stage] > 0
    assert result.timings["total"] >= result.timings["llm_generate"]
    assert conversation.turns[0].assistant == result.raw_reply
    assert conversation.turns[0].user.count("<sketch>") == 3


def test_follow_up_turn_keeps_the_conversation(tiny_pipeline, scene):
    first, conversation = tiny_pipeline(scene, "what is here?")
    second, conversation = tiny_pipeline(scene, "and what colour is it?", conversation=conversation)
    assert len(conversation.turns) == 2
    prompt = conversation.render(eos="</s>")
    assert prompt.count("<image>") == 1 and "what is here?" in prompt and "and what colour is it?" in prompt
    with pytest.raises(VitronInputError, match="start a new one"):
        tiny_pipeline(np.zeros((50, 60, 3), np.uint8), "again", conversation=conversation)


def test_grounded_conversation_links_phrases_to_masks(tiny_pipeline, scene):
    reply = "I see <p> a red patch </p> [SEG] beside <p> a blue patch </p> <Region>[0.6, 0.45, 0.9, 0.75]</Region>."
    result = tiny_pipeline.ground_reply(scene, "describe the image", reply)
    assert result.errors == []
    assert result.answer == "I see a red patch beside a blue patch."
    pairs = result.grounded_phrases
    assert [(p, m.source) for p, m in pairs] == [("a red patch", SOURCE_EMBEDDING), ("a blue patch", SOURCE_TEXT_BOX)]
    for _, m in pairs:
        assert m.mask.shape == scene.shape[:2]
    # the embedding path really used the [SEG] hidden state: redo it by hand and compare
    llm = tiny_pipeline.llm
    conversation = Conversation(system=system_prompt(tiny_pipeline.specialists.names), image_hw=scene.shape[:2],
                                turns=[Turn(user="describe the image")])
    prompt = llm.build_prompt(conversation, llm.encode_image(scene))
    embeddings = llm.signal_embeddings(prompt, llm.encode_reply(reply))
    assert embeddings.shape == (1, tiny_pipeline.specialists["segmenter"].prompt_dim)
    (by_hand,) = tiny_pipeline.specialists["segmenter"].run(Frame(scene), [SpecialistCall("segmentation", embedding=embeddings[0])])
    assert np.array_equal(by_hand.masks[0], pairs[0][1].mask)


def test_the_reply_box_goes_beside_the_signal_only_where_the_checkpoint_learned_it(tiny_pipeline, scene, monkeypatch):
    """Published VITRON checkpoints prompt SAM with the reply's box and the [SEG] signal together; one whose facts say
    box_prompt false (the shapes LLM) learned to find the object from the signal alone, and gets no box."""
    reply = ("<module>segmenter</module> <instruction>segmentation: the patch</instruction> "
             "<Region>[0.10, 0.10, 0.30, 0.30]</Region> [SEG]")
    calls = []
    run = tiny_pipeline.run_specialist
    monkeypatch.setattr(tiny_pipeline, "run_specialist", lambda name, frame, batch: calls.extend(batch) or run(name, frame, batch))
    assert tiny_pipeline.llm.box_prompt  # the tiny checkpoint's facts say nothing: VITRON's way
    result = tiny_pipeline.ground_reply(scene, "segment the patch", reply)
    assert [m.source for m in result.masks] == [SOURCE_EMBEDDING_AND_BOX] and calls[-1].box_xyxy is not None
    monkeypatch.setattr(tiny_pipeline.llm, "box_prompt", False)
    result = tiny_pipeline.ground_reply(scene, "segment the patch", reply)
    assert [m.source for m in result.masks] == [SOURCE_EMBEDDING]
    assert calls[-1].box_xyxy is None and calls[-1].embedding is not None
    assert result.invocations[0].box_xyxy is not None  # what the LLM wrote is still reported
    add = ("<module>editor</module> <instruction>add: a red circle</instruction> "
           "<Region>[0.10, 0.10, 0.30, 0.30]</Region> [SEG]")
    tiny_pipeline.ground_reply(scene, "add a red circle", add)  # an add's box says where: it is kept
    assert calls[-1].task == "add" and calls[-1].box_xyxy is not None


def test_everything_invocation_and_format_errors_in_one_reply(tiny_pipeline, scene):
    reply = (
        "<module>segmenter</module> <instruction>everything: all objects</instruction> "
        "<module>painter</module> <instruction>paint: sky</instruction> "
        "<module>segmenter</module> <instruction>segmentation: the cup</instruction>"
    )
    result = tiny_pipeline.ground_reply(scene, "segment everything", reply)
    assert any(m.source == SOURCE_EVERYTHING for m in result.masks)
    assert any("unknown module 'painter'" in e for e in result.errors)
    assert any("nothing to prompt the segmenter with" in e for e in result.errors)  # no [SEG], no <Region>


def test_bad_inputs_raise_clear_errors(tiny_pipeline, scene):
    cases = [
        (dict(image=scene.astype(np.float32), request="x"), "must be uint8"),
        (dict(image=scene[..., 0], request="x"), r"shape \(H, W, 3\)"),
        (dict(image=scene, request="  "), "non-empty text"),
        (dict(image=scene, request="x", sketches=[Sketch.box(10, 10, 300, 50)]), "outside the 200x120 image"),
        (dict(image=scene, request="x", sketches=[Sketch.box(50, 10, 20, 50)]), "x1 < x2"),
        (dict(image=scene, request="x", sketches=[Sketch.point(-1, 5)]), "outside"),
        (dict(image=scene, request="x", sketches=[Sketch.scribble([[1, 1]])]), "at least two points"),
        (dict(image=scene, request="x", sketches=[Sketch.from_mask(np.zeros((120, 200), bool))]), "mask is empty"),
    ]
    for kwargs, message in cases:
        with pytest.raises(VitronInputError, match=message):
            tiny_pipeline(**kwargs)


def test_checkpoint_without_vitron_heads_serves_the_text_paths(tiny_pipeline, scene):
    """A published LLaVA has no sketch encoder or signal projector: regions become box text, [SEG] is refused."""
    base = tiny_pipeline.llm
    text_only = VitronLLM(base.model, base.processor, None, base.config)
    pipeline = VitronPipeline(text_only, tiny_pipeline.specialists, "tiny-text-only")
    _, conversation = pipeline(scene, "what is this?", [Sketch.box(120, 60, 180, 110)])
    region = conversation.turns[0].regions[0]
    # box 120-180 x 60-110 in a 200x120 image padded to 200x200 (40 px down), normalised
    assert text_only.region_as_text(region, Letterbox(120, 200)) == "[0.60, 0.50, 0.90, 0.75]"
    prompt = text_only.build_prompt(conversation, text_only.encode_image(scene))
    prompt_text = base.tokenizer.decode(prompt.ids, skip_special_tokens=False)
    assert "Region 1: [0.60, 0.50, 0.90, 0.75]" in prompt_text and "<sketch>" not in prompt_text
    assert "<sketch>" in conversation.turns[0].user  # the conversation keeps the placeholder for other models
    grounded = pipeline.ground_reply(scene, "x", "it is <p> the thing </p> [SEG]")
    assert any("no signal projector" in e for e in grounded.errors)


def test_heads_that_do_not_fit_the_segmenter_are_refused(tiny_pipeline):
    class WideSegmenter:
        name, tasks, prompt_dim = "segmenter", frozenset({"segmentation"}), 999

    with pytest.raises(CheckpointLoadError, match="do not belong together"):
        VitronPipeline(tiny_pipeline.llm, {"segmenter": WideSegmenter()})


def test_a_failed_query_leaves_the_conversation_untouched(tiny_pipeline, scene, monkeypatch):
    _, conversation = tiny_pipeline(scene, "first question")

    def broken_generate(prompt, on_text=None, grammar=None):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(tiny_pipeline.llm, "generate", broken_generate)
    with pytest.raises(RuntimeError):
        tiny_pipeline(scene, "second question", conversation=conversation)
    assert [t.user for t in conversation.turns] == ["first question"]


def test_progress_reports_each_stage_and_the_reply_as_it_grows(tiny_pipeline, scene):
    events = []
    result, _ = tiny_pipeline(scene, "what is here?", [Sketch.point(50, 60)], progress=lambda *e: events.append(e))
    stages = [stage for stage, text in events if not text]
    assert stages[:4] == ["segmenter_prompts", "vision_encoder", "prompt", "llm_generate"]
    partial = [text for stage, text in events if stage == "llm_generate" and text]
    assert partial, "no partial reply was streamed"
    assert all(later.startswith(earlier) for earlier, later in zip(partial, partial[1:]))
    assert partial[-1] == result.raw_reply


def test_cancelling_from_progress_stops_generation(tiny_pipeline, scene):
    tokens_seen = []

    def cancel_after_two_tokens(stage, text):
        if stage == "llm_generate" and text:
            tokens_seen.append(text)
            if len(tokens_seen) == 2:
                raise QueryCancelled("cancelled by the caller")

    conversation = Conversation(system=system_prompt(tiny_pipeline.specialists.names), image_hw=scene.shape[:2])
    with pytest.raises(QueryCancelled):
        tiny_pipeline(scene, "describe", conversation=conversation, progress=cancel_after_two_tokens)
    assert len(tokens_seen) == 2 and conversation.turns == []
