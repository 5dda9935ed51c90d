"""The invocation format as a grammar, generated from the specialist registry, so replies parse by construction.

A `ReplyGrammar` describes every reply `invocation.parse_reply` accepts without an error, for one profile: the
modules and tasks it loads, `<Region>` boxes in its box format, `<p>` phrases, and `[SEG]` where the checkpoint has
a signal projector. Free text outside tags stays free (it only cannot open a tag: no `<` and no `[`). Local LLM
backends decode under it (model/constrained.py); remote servers take it as Lark (llguidance), GBNF (llama.cpp's
llama-server, and xgrammar's EBNF) or a regular expression (vLLM / outlines).

Normalised boxes are exact: hundredths written as the checkpoint family writes them (BOX_STYLES: "0.30" for the
ShapesWorld checkpoints, "0.3" for LLaVA-1.5's grounding data), x1 < x2 and y1 < y2, and, for a known image size, at least one pixel of the box inside the image after
LLaVA's padded-square letterbox (what `parse_box` checks). Pixel boxes are integers within the image; their order
is not enforced by the grammar (a pixel pair cross product is too large), so a pixel-box checkpoint can still
write a reversed box, which the parser reports.

`require` names a task the reply must invoke with a prompt the grounder can use: the grammar then has exactly one
such call first (after an optional short lead-in), with `[SEG]` when the checkpoint has a signal projector, else
with a box. That is how a request to segment always reaches the segmenter, whatever the weights.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from .geometry import Letterbox

_TEXT = r"[^<\[]"  # one character of free text: anything that does not open a tag or a token
_MAX_TEXT_TOKENS = 24  # tokens of an instruction or phrase before the grammar closes it (bounds a forced call)
_MAX_LEAD_TOKENS = 12  # tokens of free text before a required call


def _fixed2(hundredths: int) -> str:
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def _round2(hundredths: int) -> str:
    """How LLaVA-1.5's training data writes a coordinate: Python's str(round(v, 2)), so 0.3 and 1.0, not 0.30."""
    return str(round(hundredths / 100, 2))


# how a box's numbers are written, by checkpoint family: hundredths -> text
BOX_STYLES = {"fixed2": _fixed2, "round2": _round2}


def axis_lower_bounds(side: int, offset: int, length: int) -> dict[int, int]:
    """For one axis of a letterboxed image: first coordinate (in hundredths) -> the smallest second coordinate that
    gives a box `parse_box` accepts (ordered, and at least one pixel inside the image). Coordinates with no valid
    partner are left out. `side` is the padded square's side, `offset` the image's start in it, `length` its size."""
    bounds = {}
    for first in range(100):
        start = max(first / 100 * side - offset, 0.0)
        for second in range(first + 1, 101):
            end = min(second / 100 * side - offset, float(length))
            if end - start >= 1.0:
                bounds[first] = second
                break
    return bounds


def box_rules(box_format: str, box_style: str, image_hw: tuple[int, int] | None) -> dict[str, list[list[str]]]:
    """The `box` rule and its helpers: "[x1, y1, x2, y2]" as `parse_box` accepts it (see the module docstring)."""
    rules: dict[str, list[list[str]]] = {}
    if box_format == "pixel":
        height, width = image_hw or (9999, 9999)
        rules["box"] = [["\"[\"", "px_w", "\", \"", "px_h", "\", \"", "px_w", "\", \"", "px_h", "\"]\""]]
        rules["px_w"] = _integer_up_to(width)
        rules["px_h"] = _integer_up_to(height)
        return rules
    if image_hw is None:
        x_bounds = y_bounds = {first: first + 1 for first in range(100)}
    else:
        letterbox = Letterbox(*image_hw)
        x_offset, y_offset = letterbox.offset_xy
        x_bounds = axis_lower_bounds(letterbox.side, x_offset, letterbox.width)
        y_bounds = axis_lower_bounds(letterbox.side, y_offset, letterbox.height)
    value = BOX_STYLES[box_style]
    # x1 y1 x2 y2: x2 depends on x1 across y1, so each x1 value gets its own rule of (y1, x2, y2) alternatives,
    # reached through a one-alternative rule so that an Earley row holds one x1's alternatives, not all of them
    rules["box"] = [["\"[\"", f"x{first}", "\"]\""] for first in x_bounds]
    for first, second_min in x_bounds.items():
        rules[f"x{first}"] = [[f"\"{value(first)}, \"", f"after_x{first}"]]
        rules[f"after_x{first}"] = [
            [f"\"{value(y_first)}, \"", f"ge{second_min}", "\", \"", f"ge{y_min}"]
            for y_first, y_min in y_bounds.items()
        ]
    for low in sorted(set(x_bounds.values()) | set(y_bounds.values())):
        rules[f"ge{low}"] = [[f"\"{value(v)}\""] for v in range(low, 101)]
    return rules


def _check_box(box_format: str, box_style: str) -> None:
    if box_format not in ("normalized", "pixel"):
        raise ValueError(f"box_format must be 'normalized' or 'pixel', got {box_format!r}")
    if box_style not in BOX_STYLES:
        raise ValueError(f"box_style must be one of {sorted(BOX_STYLES)}, got {box_style!r}")


class _Grammar:
    """Emitters shared by the grammars here: subclasses give `rules` (name -> alternatives, starting at "start")
    and `seg` (whether [SEG] may appear)."""

    rules: dict
    seg: bool

    def lark(self, seg_token_id: int | None = None) -> str:
        """llguidance's Lark dialect; `[SEG]` is the tokenizer's special token `seg_token_id` (never spelled)."""
        if self.seg and seg_token_id is None:
            raise ValueError("a grammar with [SEG] needs the tokenizer's [SEG] token id")
        lines = ["items: item*"] if "item" in self.rules else []
        for name, alternatives in self.rules.items():
            lines.append(f"{name}: {_alternatives(alternatives, _lark_symbol)}")
        lines.append(f"TEXT: /{_TEXT}+/")
        lines.append(f"instr[max_tokens={_MAX_TEXT_TOKENS}]: /{_TEXT}*/")
        lines.append(f"phrase_text[max_tokens={_MAX_TEXT_TOKENS}]: /[^<\\[ ]{_TEXT}*/")
        lines.append(f"lead[max_tokens={_MAX_LEAD_TOKENS}]: /{_TEXT}+/")
        if self.seg:
            lines.append(f"seg: <[{int(seg_token_id)}]>")
        return "\n".join(lines) + "\n"

    def gbnf(self) -> str:
        """GBNF (llama.cpp's grammar format; xgrammar reads it as EBNF). `[SEG]` is the literal text."""
        names = {name: _gbnf_name(name) for name in self.rules}
        names["items"] = "items"
        lines = []
        for name in ["start", *[n for n in self.rules if n != "start"]]:
            lines.append(f"{names[name]} ::= {_alternatives(self.rules[name], lambda s: _gbnf_symbol(s, names))}")
        if "item" in self.rules:
            lines.append("items ::= item*")
        lines.append(f"text ::= {_TEXT}+")
        lines.append(f"instr ::= {_TEXT}*")
        lines.append(f"phrase-text ::= [^<\\[ ] {_TEXT}*")
        lines.append(f"lead ::= {_TEXT}+")
        if self.seg:
            lines.append('seg ::= "[SEG]"')
        return "\n".join(lines) + "\n"

    def regex(self) -> str:
        """One regular expression (Python / Rust syntax) for the whole reply: the grammar has no recursion but
        `items`, which becomes `*`. Boxes here bound each value but not their order (exact boxes would make it
        megabytes): servers that take a grammar should get `gbnf()` or `lark()`."""
        memo: dict[str, str] = {}

        def expand(name: str) -> str:
            if name in memo:
                return memo[name]
            if name == "box" and self.box_format == "normalized":
                value = "(?:" + "|".join(re.escape(BOX_STYLES[self.box_style](v)) for v in range(101)) + ")"
                return r"\[" + value + (", " + value) * 3 + r"\]"
            if name == "items":
                return "(?:" + expand("item") + ")*"
            alternatives = self.rules[name]
            parts = ["".join(_regex_symbol(s, expand) for s in alt) for alt in alternatives if alt]
            memo[name] = "(?:" + "|".join(parts) + ")" + ("?" if any(not alt for alt in alternatives) else "")
            return memo[name]

        return expand("start")


@dataclass(frozen=True)
class ChoiceGrammar(_Grammar):
    """Exactly one of `options` (a one-word task choice, or a span of the request): nothing else can be written."""

    options: tuple[str, ...]
    seg: bool = False

    def __post_init__(self):
        object.__setattr__(self, "options", tuple(dict.fromkeys(self.options)))
        if not self.options or any(not o or "\"" in o or "\\" in o or "\n" in o for o in self.options):
            raise ValueError(f"choices must be non-empty single-line text without quotes, got {self.options!r}")

    @cached_property
    def rules(self) -> dict[str, list[list[str]]]:
        return {"start": [[f"\"{option}\""] for option in self.options]}


@dataclass(frozen=True)
class TextGrammar(_Grammar):
    """Free text that opens no tag and writes no [SEG]: a plain answer parses to itself."""

    seg: bool = False

    @cached_property
    def rules(self) -> dict[str, list[list[str]]]:
        return {"start": [["items"]], "item": [["TEXT"]]}


@dataclass(frozen=True)
class BoxGrammar(_Grammar):
    """One box and nothing else, as a grounding LLM answers a referring prompt ("[0.12, 0.3, 0.45, 0.88]")."""

    box_format: str = "normalized"
    box_style: str = "fixed2"
    image_hw: tuple[int, int] | None = None
    seg: bool = False

    def __post_init__(self):
        _check_box(self.box_format, self.box_style)

    @cached_property
    def rules(self) -> dict[str, list[list[str]]]:
        return {"start": [["box"]], **box_rules(self.box_format, self.box_style, self.image_hw)}


@dataclass(frozen=True)
class ReplyGrammar(_Grammar):
    """What a reply may say, for one profile (and, for exact boxes, one image size)."""

    modules: Mapping[str, tuple[str, ...]]  # loaded specialist -> its tasks (the registry's); kept as pairs
    grounder: str  # the specialist that grounds phrases and bare [SEG]
    box_format: str = "normalized"  # "normalized" (0-1 of the padded square) or "pixel"
    seg: bool = True  # the checkpoint has a [SEG] token and a signal projector
    image_hw: tuple[int, int] | None = None  # bounds boxes to this image; None: any image of at least 100 px
    require: str | None = None  # a task of the grounder's the reply must call with a usable prompt
    # "module:task" calls that need a prompt for the grounder ([SEG] or a box): the grammar gives them one
    prompted: frozenset[str] = frozenset()
    calls: bool = True  # <module> calls may be written (False: a grounded-conversation checkpoint such as GLaMM)
    phrase_boxes: bool = True  # a <p> phrase may carry a box instead of [SEG]
    box_style: str = "fixed2"  # how numbers are written (BOX_STYLES): "0.30" / "1.00", or LLaVA's "0.3" / "1.0"

    def __post_init__(self):
        # hashable, so compiled grammars can be cached by their description
        object.__setattr__(self, "modules", tuple((name, tuple(tasks)) for name, tasks in dict(self.modules).items()))
        object.__setattr__(self, "prompted", frozenset(self.prompted))
        for name, tasks in self.modules:
            for word in (name, *tasks):
                if not re.fullmatch(r"[A-Za-z0-9_ ]+", word):
                    raise ValueError(f"module and task names must be plain words, got {word!r}")
        _check_box(self.box_format, self.box_style)
        if not self.calls and (self.require is not None) and not self.seg:
            raise ValueError("a grammar without calls can require a grounding only through [SEG]")
        modules = dict(self.modules)
        if self.grounder not in modules:
            raise ValueError(f"grounder {self.grounder!r} is not among the modules {sorted(modules)}")
        if self.require is not None and self.require not in modules[self.grounder]:
            raise ValueError(f"required task {self.require!r} is not one of the {self.grounder}'s tasks "
                             f"{sorted(modules[self.grounder])}")

    # -- the grammar as rules: name -> alternatives, each a sequence of literals ("..."), rules and terminals --

    @cached_property
    def rules(self) -> dict[str, list[list[str]]]:
        """name -> alternatives; a symbol is a quoted literal, a rule name, `TEXT`, `INSTR`, `PHRASE` or `SEG`."""
        rules: dict[str, list[list[str]]] = {}
        items = [["TEXT"], ["phrase"]] + ([["call"]] if self.calls else []) + ([["SEG"]] if self.seg else [])
        rules["item"] = items
        calls = []
        for module, tasks in self.modules:
            for task in tasks:
                if f"{module}:{task}" not in self.prompted:
                    calls.append(self._call(module, task, box="opt", seg="opt"))
                    continue
                # a call the grounder must prompt: a box (and maybe [SEG]), or [SEG] alone
                calls.append(self._call(module, task, box="yes", seg="opt"))
                if self.seg:
                    calls.append(self._call(module, task, box="no", seg="yes"))
        rules["call"] = calls
        tails = ([["\" <Region>\"", "box", "\"</Region>\""]] if self.phrase_boxes else []) + (
            [["\" \"", "SEG"]] if self.seg else [])
        if not tails:
            raise ValueError("phrases need [SEG] or boxes to ground them")
        # the phrase's own text takes the space before </p>: a lexeme cannot give back what it matched
        rules["phrase"] = [["\"<p> \"", "PHRASE", "\"</p>\"", *tail] for tail in tails]
        if self.require is not None and not self.calls:  # LISA / GLaMM: "Sure, it is [SEG]."
            rules["start"] = [["lead", "SEG", "items"], ["SEG", "items"]]
        elif self.require is not None:
            seg = "yes" if self.seg else "no"
            rules["required"] = [self._call(self.grounder, self.require, box="no" if self.seg else "yes", seg=seg)]
            rules["start"] = [["lead", "required", "items"], ["required", "items"]]
        else:
            rules["start"] = [["items"]]
        if not self.calls:
            del rules["call"]
        if self.calls or self.phrase_boxes:
            rules.update(box_rules(self.box_format, self.box_style, self.image_hw))
            rules["box_opt"] = [[], ["\" <Region>\"", "box", "\"</Region>\""]]
        if self.seg and self.calls:
            rules["seg_opt"] = [[], ["\" \"", "SEG"]]
        return rules

    def _call(self, module: str, task: str, box: str, seg: str) -> list[str]:
        """One alternative of <module>M</module> <instruction>T: ...</instruction> [<Region>box</Region>] [[SEG]]."""
        head = [f"\"<module>{module}</module> <instruction>{task}: \"", "INSTR", "\"</instruction>\""]
        box_part = {"opt": ["box_opt"], "yes": ["\" <Region>\"", "box", "\"</Region>\""], "no": []}[box]
        seg_part = {"opt": ["seg_opt"] if self.seg else [], "yes": ["\" \"", "SEG"], "no": []}[seg]
        return head + box_part + seg_part

def _alternatives(alternatives: list[list[str]], render) -> str:
    """Alternatives joined by |; an empty alternative makes the group optional (Lark and GBNF alike)."""
    body = " | ".join(" ".join(render(s) for s in alt) for alt in alternatives if alt)
    return f"({body})?" if any(not alt for alt in alternatives) else body


def _integer_up_to(limit: int) -> list[list[str]]:
    """Alternatives (literals and character classes) of the integers 0..limit without leading zeros."""
    digits = str(int(limit))
    alternatives = [['"0"']]
    for length in range(1, len(digits)):  # shorter numbers: any
        alternatives.append(["[1-9]"] + ["[0-9]"] * (length - 1))
    for i, digit in enumerate(digits):  # as long as `limit`: a smaller digit at i after its prefix, then any
        low = 1 if i == 0 else 0
        if int(digit) > low:
            prefix = [f'"{digits[:i]}"'] if i else []
            alternatives.append(prefix + [f"[{low}-{int(digit) - 1}]"] + ["[0-9]"] * (len(digits) - i - 1))
    if digits != "0":
        alternatives.append([f'"{digits}"'])
    return alternatives


def _lark_symbol(symbol: str) -> str:
    if symbol.startswith("["):
        return f"/{symbol}/"
    return {"TEXT": "TEXT", "INSTR": "instr", "PHRASE": "phrase_text", "SEG": "seg", "lead": "lead"}.get(symbol, symbol)


def _gbnf_name(name: str) -> str:
    return "root" if name == "start" else name.replace("_", "-")


def _gbnf_symbol(symbol: str, names: dict[str, str]) -> str:
    if symbol.startswith(("[", '"')):
        return symbol
    fixed = {"TEXT": "text", "INSTR": "instr", "PHRASE": "phrase-text", "SEG": "seg", "lead": "lead"}
    return fixed.get(symbol) or names[symbol]


def _regex_symbol(symbol: str, expand) -> str:
    if symbol.startswith('"'):
        return re.escape(symbol[1:-1])
    if symbol.startswith("["):
        return symbol
    fixed = {
        "TEXT": f"{_TEXT}+", "INSTR": f"{_TEXT}*", "PHRASE": f"[^<\\[ ]{_TEXT}*", "lead": f"{_TEXT}+",
        "SEG": re.escape("[SEG]"),
    }
    return fixed.get(symbol) or expand(symbol)
