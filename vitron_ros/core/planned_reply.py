"""Replies for checkpoints never taught to call specialists (the "planned" family kind: LLaVA-1.5).

LLaVA-1.5 ignores format instructions in its system turn, but it was trained to answer two prompts with boxes and
regions (families.py quotes them). So the runtime asks it only what it was trained on, each answer decoded under a
grammar, and writes the invocation the parser reads from those answers:

1. the task: the caller's (the service or action that was called), else a one-word choice among "answer" and the
   loaded specialists' tasks, forced by the grammar;
2. for a task that needs a prompt (segmentation, tracking, edits of an object): the object phrase, a span of the
   request chosen under the grammar, then the trained referring prompt with the box forced by the grammar
   (its numbers as LLaVA writes them, ordered, inside the image);
3. a user's sketches: each described with the trained region prompt, the description put beside its box in the
   request;
4. "answer": the request itself, answered as free text (a grammar without tags).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from .conversation import SKETCH_TOKEN, Conversation, Turn
from .reply_grammar import BoxGrammar, ChoiceGrammar, TextGrammar

ANSWER = "answer"  # the task word for "no specialist: just answer"
_MAX_SPAN_WORDS = 8


@dataclass(frozen=True)
class TaskChoice:
    module: str | None  # None: answer in text
    task: str
    needs_prompt: bool = False  # the call needs a box (the object is asked for with the referring prompt)
    grounded: bool = False  # another specialist works on the grounded object: it gets the whole request


def request_spans(request: str) -> list[str]:
    """Contiguous word spans of the request (punctuation trimmed), longest first: the phrases it can name."""
    words = [w for w in re.findall(r"[\w'-]+", request)]
    spans = {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, min(len(words), i + _MAX_SPAN_WORDS) + 1)}
    return sorted(spans, key=lambda s: (-len(s), s)) or [request.strip()]


def plan_reply(llm, encoding, history: Conversation, turn: Turn, choices: dict[str, TaskChoice], task: str | None,
               on_text: Callable[[str], None] | None = None) -> str:
    """The reply the parser reads, written from the LLM's answers to the prompts it was trained on."""
    family = llm.family
    image_hw = history.image_hw

    def ask(text: str, grammar, regions=()) -> str:
        conversation = replace(history, turns=[Turn(user=text, regions=tuple(regions))])
        reply = llm.answer(llm.build_prompt(conversation, encoding), grammar=grammar).text
        if on_text is not None:
            on_text(reply)
        return reply.strip()

    # 3. Sketches: what the user drew, in the checkpoint's own words, beside its box
    request = turn.user
    for index, region in enumerate(turn.regions):
        box = llm.region_as_text(region, encoding.letterbox)
        description = ask(family.region_prompt.format(box=box), TextGrammar())
        request = request.replace(f"Region {index + 1}: {SKETCH_TOKEN}", f"Region {index + 1} ({description}): {SKETCH_TOKEN}", 1)
    # 1. The task
    if task is None:
        word = ask(f"{_plain(request)}\nWhich one of these does the request ask for: {', '.join(choices)}? "
                   "Answer with one word.", ChoiceGrammar(tuple(choices)))
        choice = choices[word]
    else:
        choice = next(c for c in choices.values() if c.task == task and c.module is not None)
    # 4. A plain answer: the request itself, in the conversation so far
    if choice.module is None:
        conversation = replace(history, turns=[*history.turns, replace(turn, user=request)])
        return llm.answer(llm.build_prompt(conversation, encoding), on_text=on_text, grammar=TextGrammar()).text
    # 2. The object and its box, asked as the checkpoint was trained
    instruction = _plain(turn.user)
    box = ""
    if choice.needs_prompt:
        phrase = ask(f"{instruction}\nWhich words of the request name the object? Answer with those words only.",
                     ChoiceGrammar(tuple(request_spans(instruction))))
        box = ask(family.referring_prompt.format(phrase=phrase),
                  BoxGrammar(llm.config.box_format, family.box_style, image_hw))
        instruction = instruction if choice.grounded else phrase
        box = f" <Region>{box}</Region>"
    return f"<module>{choice.module}</module> <instruction>{choice.task}: {instruction}</instruction>{box}"


def _plain(text: str) -> str:
    """The request without sketch placeholders: a described region keeps its description, a bare one goes."""
    def keep(match: re.Match) -> str:
        return f"{match.group(1)} ({match.group(2)})" if match.group(2) else ""

    return " ".join(re.sub(r"(Region \d+)(?: \(([^)]*)\))?: " + re.escape(SKETCH_TOKEN), keep, text).split())

