"""Generation and editing on the tiny profile (random diffusers parts), and the specialist seam they sit on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from vitron_lab.shapes.world import generate_scene
from vitron_ros.core.errors import QueryCancelled, VitronInputError
from vitron_ros.core.pipeline import VitronPipeline
from vitron_ros.core.results import OUTPUT_KINDS
from vitron_ros.core.specialists import SPECIALISTS, SpecialistCall, SpecialistEntry, SpecialistOutput, TaskSpec
from vitron_ros.core.specialists.diffusion import EditorConfig, composite, square_crop
from vitron_ros.core.specialists.editor import plan_edit
from vitron_ros.core.specialists.generator import parse_layout


def _invoke(module: str, instruction: str, region: str = "", seg: bool = True) -> str:
    box = f" <Region>{region}</Region>" if region else ""
    return f"<module>{module}</module> <instruction>{instruction}</instruction>{box}{' [SEG]' if seg else ''}"


@pytest.fixture(scope="module")
def shapes_image() -> np.ndarray:
    return generate_scene(seed=3).image  # 64x64 RGB, several coloured shapes


EDITS = [
    ("remove: the red circle", "[0.1, 0.1, 0.6, 0.6]"),
    ("recolour: the red circle to blue", "[0.1, 0.1, 0.6, 0.6]"),
    ("replace: the red circle with a blue square", "[0.1, 0.1, 0.6, 0.6]"),
    ("add: a yellow triangle", "[0.2, 0.2, 0.5, 0.5]"),
    ("instruct: make it night", ""),
]


@pytest.mark.parametrize("instruction,region", EDITS, ids=[e[0].split(":")[0] for e in EDITS])
def test_each_edit_kind_end_to_end_leaves_outside_pixels_exactly(tiny_pipeline, shapes_image, instruction, region):
    task = instruction.split(":")[0]
    result = tiny_pipeline.ground_reply(shapes_image, instruction, _invoke("editor", instruction, region))
    assert result.errors == []
    assert len(result.images) == 1
    made = result.images[0]
    assert (made.kind, made.specialist, made.task, made.synthetic) == ("edited", "editor", task, True)
    assert made.image.shape == shapes_image.shape and made.image.dtype == np.uint8
    assert made.region.shape == shapes_image.shape[:2] and made.region.any()
    outside = ~made.region
    assert np.array_equal(made.image[outside], shapes_image[outside])  # byte for byte
    assert "editor_answer" in result.timings
    if task in ("remove", "recolour", "replace"):  # grounded: the segmenter's mask is in the result too
        assert result.masks and result.masks[0].invocation_index == 0
    json = result.to_json()["images"][0]
    assert json["synthetic"] is True and json["region_area"] == int(made.region.sum())


def test_move_copies_the_object_exactly_and_the_hole_is_repainted(tiny_pipeline):
    image = np.full((64, 64, 3), 200, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[10:20, 10:18] = True
    image[mask] = (220, 40, 40)
    plan = plan_edit(SpecialistCall(task="move", instruction="the red square to the right", mask=mask), image,
                     EditorConfig(model="unused"))
    moved = np.zeros_like(mask)
    moved[10:20, 18:26] = True  # shifted by its own width
    assert np.array_equal(plan.start[moved], image[mask])
    assert not (plan.fill & moved).any() and plan.fill[mask & ~moved].all()  # the vacated pixels are repainted
    assert np.array_equal(plan.region, plan.fill | moved)
    editor = tiny_pipeline.specialists["editor"]
    from vitron_ros.core.specialists import Frame

    out = editor.run(Frame(image), [SpecialistCall(task="move", instruction="the red square to the right", mask=mask)])[0]
    edited, region = out.images[0], out.masks[0]
    assert np.array_equal(edited[moved], image[mask])  # the object itself is copied, not redrawn
    assert np.array_equal(edited[~region], image[~region])


def test_composite_is_exact_outside_the_region():
    rng = np.random.default_rng(0)
    original, edited = rng.integers(0, 256, (2, 40, 50, 3), dtype=np.uint8)
    region = rng.random((40, 50)) < 0.3
    out = composite(original, edited, region)
    assert np.array_equal(out[~region], original[~region]) and np.array_equal(out[region], edited[region])
    with pytest.raises(ValueError, match="shapes differ"):
        composite(original, edited[:-1], region)


def test_crop_is_square_inside_the_image_and_at_least_the_models_side():
    assert square_crop((0, 0, 10, 10), (480, 640), 0.5, 256) == (0, 0, 256, 256)
    x1, y1, x2, y2 = square_crop((600, 400, 640, 480), (480, 640), 0.5, 64)
    assert x2 - x1 == y2 - y1 == 160 and x2 <= 640 and y2 <= 480  # 80 px tall box, half of it on each side
    assert square_crop((0, 0, 60, 30), (30, 60), 0.5, 512) == (15, 0, 45, 30)  # capped by the image, centred


@pytest.mark.parametrize("reply,message", [
    (_invoke("editor", "paint: the red circle", "[0.1, 0.1, 0.6, 0.6]"), "must start with one of its tasks"),
    (_invoke("editor", "add: a red circle", "[0.5, 0.5, 1.4, 1.2]"), "outside the normalized range"),
    (_invoke("editor", "add: a red circle", seg=False), "add needs a <Region> box"),
    (_invoke("editor", "recolour: the red circle", "[0.1, 0.1, 0.6, 0.6]"), "must read 'OBJECT to COLOUR'"),
    (_invoke("editor", "replace: the red circle", "[0.1, 0.1, 0.6, 0.6]"), "must read 'OBJECT with NEW OBJECT'"),
    (_invoke("editor", "move: the red circle sideways", "[0.1, 0.1, 0.6, 0.6]"), "left|right|up|down"),
    (_invoke("editor", "remove: the red circle", seg=False), "nothing to prompt the segmenter with"),
    (_invoke("generator", "layout: a red circle somewhere"), "has no '<p> phrase </p>"),
])
def test_bad_edits_give_errors_that_name_the_problem(tiny_pipeline, shapes_image, reply, message):
    result = tiny_pipeline.ground_reply(shapes_image, "edit", reply)
    assert result.images == []
    assert any(message in e for e in result.errors), result.errors


def test_no_object_matches_is_a_clear_error(tiny_pipeline, shapes_image):
    editor = tiny_pipeline.specialists["editor"]
    from vitron_ros.core.specialists import Frame

    empty = np.zeros(shapes_image.shape[:2], bool)
    out = editor.run(Frame(shapes_image), [SpecialistCall(task="remove", instruction="the pink star", mask=empty)])
    assert isinstance(out[0], VitronInputError) and "no object was found" in str(out[0])


def test_move_that_leaves_the_image_is_refused():
    mask = np.zeros((64, 64), bool)
    mask[5:20, 50:62] = True
    with pytest.raises(VitronInputError, match="outside the image"):
        plan_edit(SpecialistCall(task="move", instruction="it to the right", mask=mask), np.zeros((64, 64, 3), np.uint8),
                  EditorConfig(model="unused"))


def test_generation_and_layout(tiny_pipeline, shapes_image):
    reply = _invoke("generator", "generation: a red circle left of a blue square") + " " + _invoke(
        "generator", "layout: <p> a red circle </p> <Region>[0.1, 0.1, 0.4, 0.4]</Region> "
                     "<p> a blue square </p> <Region>[0.5, 0.5, 0.9, 0.9]</Region>", seg=False)
    result = tiny_pipeline.ground_reply(shapes_image, "draw", reply)
    assert result.errors == []
    side = tiny_pipeline.specialists["generator"].config.resolution
    assert [(i.kind, i.task, i.image.shape) for i in result.images] == [
        ("generated", "generation", (side, side, 3)), ("generated", "layout", (side, side, 3))
    ]
    assert result.images[1].label == "a red circle; a blue square"
    assert parse_layout("<p> a </p> <Region>[0, 0, 0.5, 0.5]</Region>", 32) == [("a", (0.0, 0.0, 16.0, 16.0))]


def test_hybrid_conditioning_text_signal_or_both(tiny_pipeline):
    conditioning = tiny_pipeline.specialists["editor"].conditioning
    width = tiny_pipeline.llm.hidden_size
    signal = np.random.default_rng(0).standard_normal(width).astype(np.float32)
    text, _ = conditioning("a red circle", None)
    only, only_negative = conditioning(None, signal)
    both, _ = conditioning("a red circle", signal)
    tokens = conditioning.conditioner.tokens
    # a signal alone sits beside the empty text's tokens, as the signal stage trains it
    assert only.shape[1] == both.shape[1] == text.shape[1] + tokens
    assert only_negative[:, -tokens:].abs().sum() == 0  # the unconditional half of classifier-free guidance
    with pytest.raises(VitronInputError, match="width"):
        conditioning(None, signal[:-1])
    with pytest.raises(VitronInputError, match="nothing to condition on"):
        conditioning("", None)
    # a generation from the [SEG] embedding alone (no words) works, and differs from the text-only one
    from vitron_ros.core.specialists import Frame

    generator = tiny_pipeline.specialists["generator"]
    by_signal = generator.run(Frame(np.zeros((8, 8, 3), np.uint8)), [SpecialistCall(task="generation", signal=signal)])
    by_text = generator.run(Frame(np.zeros((8, 8, 3), np.uint8)), [SpecialistCall(task="generation", instruction="x")])
    assert not np.array_equal(by_signal[0].images[0], by_text[0].images[0])


def test_denoising_steps_are_reported_and_a_cancel_stops_them(tiny_pipeline, shapes_image):
    seen = []

    def progress(stage, text):
        seen.append((stage, text))
        if stage == "denoise" and text == "1/2":
            raise QueryCancelled("cancelled")

    with pytest.raises(QueryCancelled):
        tiny_pipeline.ground_reply(shapes_image, "x", _invoke("editor", "add: a red circle", "[0.1, 0.1, 0.5, 0.5]"),
                                   progress=progress)
    assert ("denoise", "1/2") in seen and ("denoise", "2/2") not in seen


@dataclass(frozen=True)
class _StampConfig:
    colour: int = 255


class _Stamper:
    """A specialist that stamps its box white: defined here, reachable by a registry entry alone."""

    name, tasks = "stamper", frozenset({"stamp"})

    def __init__(self, config):
        self.config = config

    def run(self, frame, calls):
        outputs = []
        for call in calls:
            region = np.zeros(frame.image.shape[:2], bool)
            x1, y1, x2, y2 = (int(v) for v in call.box_xyxy)
            region[y1:y2, x1:x2] = True
            image = frame.image.copy()
            image[region] = self.config.colour
            outputs.append(SpecialistOutput(region[None], np.ones(1, np.float32), (call.instruction,), image[None]))
        return outputs


def test_a_specialist_added_by_registry_entry_alone_reaches_the_result_and_the_messages(
    tiny_pipeline, shapes_image, monkeypatch
):
    from vitron_ros.core.specialists import system_prompt
    from vitron_ros.ros.interfaces import TypestoreFactory
    from vitron_ros.ros.result_messages import output_topics, published_outputs

    entry = SpecialistEntry("stamper", _StampConfig, lambda section, profile, device: _Stamper(section),
                            {"stamp": TaskSpec("stamp: a white box where <Region> says")}, output="images",
                            summary="stamps boxes", topic="stamped")
    monkeypatch.setitem(SPECIALISTS, "stamper", entry)
    assert "images" in OUTPUT_KINDS
    pipeline = VitronPipeline(tiny_pipeline.llm, {**tiny_pipeline.specialists,
                                                  "stamper": entry.build(_StampConfig(), None, "cpu")})
    assert "stamper (stamps boxes; tasks: stamp: a white box" in system_prompt(pipeline.specialists)
    result = pipeline.ground_reply(shapes_image, "stamp it", _invoke("stamper", "stamp: here", "[0.0, 0.0, 0.5, 0.5]"))
    assert result.errors == [] and len(result.images) == 1
    assert (result.images[0].kind, result.images[0].specialist) == ("stamped", "stamper")
    assert output_topics()["stamped"] == "vitron_ros_msgs/msg/SyntheticImage"
    factory = TypestoreFactory()
    header = factory.new("std_msgs/msg/Header", frame_id="camera")
    outputs = published_outputs(factory, result, shapes_image, header, "stamp it", "r1")
    [(topic, kind, msg)] = outputs.extra
    assert topic == "stamped" and msg.synthetic and msg.specialist == "stamper" and msg.header.frame_id == "camera"
    assert msg.image.header.frame_id == "camera" and msg.image.encoding == "rgb8"
    assert int(np.count_nonzero(np.frombuffer(bytes(msg.region.data), np.uint8))) == int(result.images[0].region.sum())


def test_every_published_synthetic_image_is_marked(tiny_pipeline, shapes_image):
    from vitron_ros.ros.interfaces import TypestoreFactory
    from vitron_ros.ros.result_messages import published_outputs

    reply = _invoke("editor", "add: a red circle", "[0.1, 0.1, 0.5, 0.5]") + " " + _invoke(
        "generator", "generation: a blue square")
    result = tiny_pipeline.ground_reply(shapes_image, "x", reply)
    factory = TypestoreFactory()
    outputs = published_outputs(factory, result, shapes_image, factory.new("std_msgs/msg/Header"), "x", "r")
    assert [(topic, msg.synthetic, msg.kind) for topic, _, msg in outputs.extra] == [
        ("edited", True, "edited"), ("generated", True, "generated")
    ]
    assert len(outputs.synthetic_images()) == 2


def test_a_long_edit_does_not_hold_up_another_query(tiny_pipeline, shapes_image):
    """The editor runs under its own lock after the model lock is released: while one edit is paused midway,
    another query (another camera's, in the node) goes through the LLM and SAM."""
    import threading

    paused, release = threading.Event(), threading.Event()

    def progress(stage, text):
        if stage == "denoise":
            paused.set()
            release.wait(60)

    reply = _invoke("editor", "add: a red circle", "[0.1, 0.1, 0.5, 0.5]")
    worker = threading.Thread(target=tiny_pipeline.ground_reply, args=(shapes_image, "x", reply),
                              kwargs={"progress": progress})
    worker.start()
    try:
        assert paused.wait(60), "the edit never reached its denoising loop"
        result, _ = tiny_pipeline(shapes_image, "what is this?")  # would deadlock if the edit held the model lock
        assert isinstance(result.answer, str)
        assert tiny_pipeline.specialist_locks["editor"].locked()
    finally:
        release.set()
        worker.join(60)
