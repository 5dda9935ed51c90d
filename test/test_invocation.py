import math

from hypothesis import given, settings
from hypothesis import strategies as st

from vitron_ros.core.invocation import Invocation, parse_reply

MODULES = {"segmenter": frozenset({"segmentation", "everything"})}
HW = (480, 640)  # letterbox side 640, original image starts 80 px down in the padded square


def parse(text, box_format="normalized"):
    return parse_reply(text, HW, MODULES, box_format)


def test_invocation_with_region_and_seg_is_typed_and_converted_to_pixels():
    reply = (
        "Found it. <module>segmenter</module> <instruction>segmentation: the red mug</instruction> "
        "<Region>(0.25, 0.25, 0.75, 0.5)</Region> [SEG]"
    )
    parsed = parse(reply)
    assert parsed.errors == ()
    assert parsed.text == "Found it."
    assert parsed.invocations == (
        Invocation("segmenter", "segmentation", "the red mug", (160.0, 80.0, 480.0, 240.0), seg_index=0),
    )


def test_pixel_box_format():
    parsed = parse("<module>segmenter</module><instruction>segmentation: cup</instruction><Region>[10, 20, 110, 220]</Region>", "pixel")
    assert parsed.invocations[0].box_xyxy == (10.0, 20.0, 110.0, 220.0)


def test_grounded_conversation_pairs_phrases_with_seg_in_order():
    reply = "A <p> red mug </p> [SEG] sits left of <p> a blue plate </p> [SEG], near <p> a fork </p> <Region>[0.1, 0.2, 0.3, 0.4]</Region>."
    parsed = parse(reply)
    assert parsed.errors == ()
    assert parsed.text == "A red mug sits left of a blue plate, near a fork."
    assert [(c.phrase, c.seg_index, c.box_xyxy is not None) for c in parsed.invocations] == [
        ("red mug", 0, False),
        ("a blue plate", 1, False),
        ("a fork", None, True),
    ]
    assert parsed.seg_count == 2


def test_bare_seg_grounds_the_request():
    parsed = parse("Sure, it is [SEG].")
    assert parsed.text == "Sure, it is."
    assert parsed.invocations == (Invocation("segmenter", "segmentation", "", None, 0, None),)


def test_seg_index_counts_markers_across_invocations_and_phrases():
    reply = "<p> a </p> [SEG] <module>segmenter</module><instruction>segmentation: b</instruction> [SEG] [SEG]"
    parsed = parse(reply)
    assert [c.seg_index for c in parsed.invocations] == [0, 1, 2]


def test_each_format_break_is_reported_by_name():
    cases = {
        "<module>blender</module><instruction>render: x</instruction>": "unknown module 'blender'",
        "<module>segmenter</module> and then nothing": "missing its <instruction>",
        "<module>segmenter</module><instruction>paint: x</instruction>": "must start with one of its tasks",
        "<module>segmenter</module><instruction>the mug</instruction>": "must start with one of its tasks",
        "<module>segmenter</module><instruction>segmentation: x</instruction><Region>(1, 2)</Region>": "malformed <Region>",
        "<module>segmenter</module><instruction>segmentation: x</instruction><Region>(0.5, 0.1, 0.2, 0.9)</Region>": "x1 < x2",
        "<module>segmenter</module><instruction>segmentation: x</instruction><Region>(0.1, 0.1, 1.5, 0.9)</Region>": "outside the normalized range",
        # entirely inside the letterbox padding above the image
        "<p> ghost </p> <Region>[0.1, 0.0, 0.5, 0.1]</Region>": "covers no pixel",
        "text <module>segmenter": "stray or unclosed tag '<module>'",
        "</p> oops": "stray or unclosed tag '</p>'",
        "<p></p> [SEG]": "empty <p></p> phrase",
    }
    for reply, expected in cases.items():
        parsed = parse(reply)
        assert any(expected in e for e in parsed.errors), (reply, parsed.errors)
    parsed = parse("<module>segmenter</module><instruction>segmentation: x</instruction><Region>[0, 0, 700, 100]</Region>", "pixel")
    assert "outside the 640x480 image" in parsed.errors[0]
    assert parsed.invocations == ()


def test_non_text_reply_is_an_error_not_an_exception():
    parsed = parse_reply(None, HW, MODULES)
    assert parsed.errors and parsed.invocations == ()


FRAGMENTS = st.sampled_from([
    "<module>", "</module>", "<instruction>", "</instruction>", "<Region>", "</Region>", "<region>", "<p>", "</p>",
    "[SEG]", "segmenter", "segmentation:", "everything:", "(", ")", "[", "]", ",", "0.5", "1e400", "-3", "nan", " ",
    "\x00", "red mug", "1.0", "0", "640",
])


@settings(max_examples=1500, deadline=None)
@given(st.lists(FRAGMENTS | st.text(max_size=8), max_size=30).map("".join), st.sampled_from(["normalized", "pixel"]))
def test_parser_never_raises_and_only_emits_valid_calls(text, box_format):
    parsed = parse_reply(text, HW, MODULES, box_format)
    assert isinstance(parsed.text, str)
    assert all(isinstance(e, str) and e for e in parsed.errors)
    for call in parsed.invocations:
        assert call.module in MODULES and call.task in MODULES[call.module]
        if call.box_xyxy is not None:
            x1, y1, x2, y2 = call.box_xyxy
            assert all(math.isfinite(v) for v in call.box_xyxy)
            assert 0 <= x1 < x2 <= HW[1] and 0 <= y1 < y2 <= HW[0]
        if call.seg_index is not None:
            assert 0 <= call.seg_index < parsed.seg_count


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_parser_never_raises_on_arbitrary_text(text):
    parse_reply(text, HW, MODULES)
