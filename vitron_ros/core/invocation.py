"""The one strict parser from LLM reply text to typed specialist invocations.

Format (documented in the README):

    <module>segmenter</module> <instruction>segmentation: the red mug</instruction> <Region>(x1, y1, x2, y2)</Region> [SEG]
    <p> the red mug </p> [SEG]            grounded phrase, mask from the signal embedding at [SEG]
    <p> the red mug </p> <Region>[x1, y1, x2, y2]</Region>   grounded phrase, mask from the box

`<Region>` and `[SEG]` are optional after an invocation. Boxes use the profile's `box_format` ("normalized": 0-1
of the padded square LLaVA sees; "pixel": original image pixels), in parentheses or brackets. `parse_reply`
never raises on any text: everything that breaks the format becomes an entry in `ParsedReply.errors`, and the
offending invocation is dropped. Nothing here evaluates model text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .geometry import Letterbox

SEG_TOKEN = "[SEG]"
_FLAGS = re.IGNORECASE | re.DOTALL
_REGION = r"<region>(?P<{name}>.*?)</region>"
_INVOCATION_RE = re.compile(
    r"<module>(?P<module>.*?)</module>\s*"
    r"(?:<instruction>(?P<instruction>.*?)</instruction>)?\s*"
    r"(?:" + _REGION.format(name="region") + r")?\s*"
    r"(?P<seg>\[SEG\])?",
    _FLAGS,
)
_PHRASE_RE = re.compile(
    r"<p>(?P<phrase>.*?)</p>\s*(?:(?P<seg>\[SEG\])|" + _REGION.format(name="region") + r")?", _FLAGS
)
_SEG_RE = re.compile(re.escape(SEG_TOKEN))
_STRAY_TAG_RE = re.compile(r"</?(?:module|instruction|region|p)>", re.IGNORECASE)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_BOX_RE = re.compile(
    r"^\s*[\(\[]\s*(" + _NUMBER + r")\s*,\s*(" + _NUMBER + r")\s*,\s*(" + _NUMBER + r")\s*,\s*(" + _NUMBER
    + r")\s*[\)\]]\s*$"
)
_MAX_SNIPPET = 60


@dataclass(frozen=True)
class Invocation:
    """One call of a specialist, as the LLM asked for it."""

    module: str  # registry name of the specialist, e.g. "segmenter"
    task: str  # one of the specialist's tasks, e.g. "segmentation", "everything"
    instruction: str  # free text after "task:"; for grounded phrases, the phrase
    box_xyxy: tuple[float, float, float, float] | None = None  # original-image pixels, XYXY, clipped to image
    seg_index: int | None = None  # which [SEG] signal embedding (in reply order) travels with this call
    phrase: str | None = None  # set when the call grounds a phrase of the answer (<p> ... </p>)


@dataclass(frozen=True)
class ParsedReply:
    text: str  # the answer for the user: tags removed, phrases kept as words
    invocations: tuple[Invocation, ...]
    seg_count: int  # number of [SEG] markers in the reply
    errors: tuple[str, ...] = field(default=())


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_SNIPPET else text[: _MAX_SNIPPET - 3] + "..."


def parse_box(
    raw: str, letterbox: Letterbox, box_format: str
) -> tuple[tuple[float, float, float, float] | None, str | None]:
    """Region text -> (pixel XYXY clipped to the image, None) or (None, error)."""
    match = _BOX_RE.match(raw)
    if not match:
        return None, f"malformed <Region> {_snippet(raw)!r}: expected four numbers (x1, y1, x2, y2)"
    values = tuple(float(v) for v in match.groups())
    if not all(math.isfinite(v) for v in values):
        return None, f"<Region> {_snippet(raw)!r} has a non-finite number"
    x1, y1, x2, y2 = values
    if not (x1 < x2 and y1 < y2):
        return None, f"<Region> {_snippet(raw)!r} needs x1 < x2 and y1 < y2"
    if box_format == "normalized":
        if min(values) < 0.0 or max(values) > 1.0:
            return None, f"<Region> {_snippet(raw)!r} lies outside the normalized range [0, 1]"
        x1, y1, x2, y2 = letterbox.box_from_normalized(values)
    elif min(x1, y1) < 0 or x2 > letterbox.width or y2 > letterbox.height:
        return None, f"<Region> {_snippet(raw)!r} lies outside the {letterbox.width}x{letterbox.height} image"
    # A normalized box may spill into the letterbox padding; what matters is the part inside the image.
    x1, x2 = max(0.0, x1), min(float(letterbox.width), x2)
    y1, y2 = max(0.0, y1), min(float(letterbox.height), y2)
    if x2 - x1 < 1.0 or y2 - y1 < 1.0:
        return None, f"<Region> {_snippet(raw)!r} covers no pixel of the {letterbox.width}x{letterbox.height} image"
    return (x1, y1, x2, y2), None


def _seg_index_at(text: str, position: int) -> int:
    return len(_SEG_RE.findall(text, 0, position))


def parse_reply(
    text: str,
    image_hw: tuple[int, int],
    modules: Mapping[str, frozenset[str] | set[str]],
    box_format: str = "normalized",
    grounder: str = "segmenter",
    grounding_task: str = "segmentation",
) -> ParsedReply:
    """Parse an LLM reply into user text and validated invocations.

    Args:
        text: the decoded reply (special tokens such as [SEG] kept).
        image_hw: (height, width) of the original image, for box conversion and bounds.
        modules: specialist name -> its task names; anything else is rejected.
        box_format: "normalized" or "pixel", as the profile's LLM writes boxes.
        grounder: the specialist that grounds phrases and bare [SEG] (the registry's grounding entry).
        grounding_task: the grounder's task for them (its entry's `grounding_task`; the pipeline passes the registry's).
    """
    if not isinstance(text, str):
        return ParsedReply("", (), 0, (f"reply must be text, got {type(text).__name__}",))
    text = text.replace("\x00", " ")  # \x00 is reserved below to mark removed spans
    letterbox = Letterbox(height=int(image_hw[0]), width=int(image_hw[1]))
    found: list[tuple[int, Invocation]] = []
    errors: list[str] = []
    consumed: list[tuple[int, int]] = []

    for match in _INVOCATION_RE.finditer(text):
        consumed.append(match.span())
        call, error = _invocation_from_match(match, text, letterbox, modules, box_format)
        if error:
            errors.append(error)
        else:
            found.append((match.start(), call))

    kept_text: list[str] = []
    cursor = 0
    for start, end in consumed:
        kept_text.append(text[cursor:start])
        cursor = end
    kept_text.append(text[cursor:])
    user_text = "\x00".join(kept_text)  # \x00 marks removed spans so later positions map back to the reply

    # Phrases and bare [SEG] are found in the text left after removing invocation blocks; their [SEG] index
    # counts every [SEG] before them in the *original* reply, so offsets are mapped back through `consumed`.
    def original_position(pos: int) -> int:
        shift = 0
        pieces = user_text[:pos].count("\x00")
        for start, end in consumed[:pieces]:
            shift += end - start
        return pos + shift - pieces

    phrase_spans: list[tuple[int, int, str]] = []
    for match in _PHRASE_RE.finditer(user_text):
        phrase = " ".join(match.group("phrase").split())
        if not phrase:
            errors.append("empty <p></p> phrase")
        seg_pos = match.start("seg") if match.group("seg") else None
        box = None
        if match.group("region") is not None:
            box, error = parse_box(match.group("region"), letterbox, box_format)
            if error:
                errors.append(f"phrase {phrase!r}: {error}")
        if phrase and (seg_pos is not None or box is not None):
            seg_index = _seg_index_at(text, original_position(seg_pos)) if seg_pos is not None else None
            call = Invocation(grounder, grounding_task, phrase, box, seg_index, phrase)
            if grounder in modules:
                found.append((original_position(match.start()), call))
            else:
                errors.append(f"grounded phrase needs the {grounder!r} specialist, which is not loaded")
        phrase_spans.append((match.start(), match.end(), phrase))

    # Bare [SEG] (LISA style, "Sure, it is [SEG].") grounds the request itself.
    covered = [(s, e) for s, e, _ in phrase_spans]
    for match in _SEG_RE.finditer(user_text):
        if any(s <= match.start() < e for s, e in covered):
            continue
        seg_index = _seg_index_at(text, original_position(match.start()))
        call = Invocation(grounder, grounding_task, "", None, seg_index, None)
        if grounder in modules:
            found.append((original_position(match.start()), call))

    pieces: list[str] = []
    cursor = 0
    for start, end, phrase in phrase_spans:
        pieces.append(user_text[cursor:start])
        pieces.append(phrase)
        cursor = end
    pieces.append(user_text[cursor:])
    clean = "".join(pieces).replace("\x00", " ")
    for stray in _STRAY_TAG_RE.finditer(clean):
        errors.append(f"stray or unclosed tag {stray.group(0)!r} in reply")
    clean = _STRAY_TAG_RE.sub(" ", _SEG_RE.sub(" ", clean))
    clean = " ".join(clean.split())
    clean = re.sub(r"\s+([.,!?;:])", r"\1", clean)

    found.sort(key=lambda item: item[0])
    return ParsedReply(
        text=clean,
        invocations=tuple(call for _, call in found),
        seg_count=len(_SEG_RE.findall(text)),
        errors=tuple(errors),
    )


def _invocation_from_match(
    match: re.Match, text: str, letterbox: Letterbox, modules: Mapping[str, frozenset[str] | set[str]], box_format: str
) -> tuple[Invocation | None, str | None]:
    module = match.group("module").strip()
    if module not in modules:
        known = ", ".join(sorted(modules)) or "none"
        return None, f"unknown module {_snippet(module)!r}; known modules: {known}"
    raw_instruction = match.group("instruction")
    if raw_instruction is None:
        return None, f"<module>{module}</module> is missing its <instruction>...</instruction>"
    task, sep, instruction = raw_instruction.partition(":")
    task = task.strip().lower()
    tasks = modules[module]
    if not sep or task not in tasks:
        return None, (
            f"instruction {_snippet(raw_instruction)!r} for {module} must start with one of its tasks "
            f"({', '.join(sorted(tasks))}) followed by ':'"
        )
    box = None
    if match.group("region") is not None:
        box, error = parse_box(match.group("region"), letterbox, box_format)
        if error:
            return None, f"{module} call: {error}"
    seg_index = _seg_index_at(text, match.start("seg")) if match.group("seg") else None
    return Invocation(module, task, " ".join(instruction.split()), box, seg_index), None
