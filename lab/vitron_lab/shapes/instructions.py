"""Instruction data from ShapesWorld scenes, one `Sample` per (scene, task), with exact targets.

Tasks (the VITRON training stages pick mixtures of them):
  caption      "describe the image."                -> "a large red circle at the top left, ... on a striped background."
  vqa          count / colour / shape / position / relation / largest questions -> a short answer
  referring    "segment the red circle left of the square." -> a segmenter invocation with [SEG] (no box: see
               InstructionMaker._referring)
  everything   "segment everything."                -> the segmenter's everything invocation
  region       "what is this?" + a point, box or scribble sketch -> "a red circle"
  grounded     "describe the image with masks."     -> "<p> a red circle </p> [SEG], ..."
  grounded_qa  "which object is the largest? show it." -> "<p> the blue square </p> [SEG]"
  echo         "repeat: the red circle above the green square." -> "the red circle above the green square"
               (text only, unrelated to the image: the from-scratch LM learns to read and copy the request,
               which a pretrained Vicuna brings along; without it the LM answers from the image alone)
  edit         "make the red circle blue." -> an editor invocation (remove, recolour, replace, move with the
               object's [SEG]; add with the box the user gave)
  layout       "draw a red circle in [0.10, ...] and ..." -> the generator's layout invocation with those boxes

Replies are written exactly as the pipeline's parser reads them (invocation.py), boxes normalised to the
padded square the LLM sees, two decimals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vitron_ros.core.geometry import Letterbox
from vitron_ros.core.sketch import Sketch

from .world import COLOURS, SHAPES, Scene, SceneObject

TASKS = ("caption", "vqa", "referring", "everything", "region", "grounded", "grounded_qa", "echo", "edit", "layout")
# The shipped tokenizer learned its merges from these tasks' text; adding a task must not change its vocabulary.
TOKENIZER_TASKS = TASKS[:8]
VQA_TYPES = ("count", "colour", "shape", "position", "relation", "largest")
RELATIONS = {"left of": (0, -1), "right of": (0, 1), "above": (1, -1), "below": (1, 1)}  # (axis, sign)
RELATION_MARGIN = 0.06  # centres must differ by this fraction of the side for a relation to hold either way
SUPERLATIVE_RATIO = 1.3  # "largest" needs the largest area to beat the runner-up by this factor
GROUNDED_REQUEST = "describe the image with masks."
BOX_FORMAT = "normalized"  # how replies write <Region> boxes (format_box): a trained checkpoint records it
CAPTION_REQUEST = "describe the image."


@dataclass
class Sample:
    task: str
    kind: str  # question type (vqa), "attribute"/"relational" (referring), sketch kind (region), else the task
    request: str
    reply: str
    answer: str = ""  # the short answer scored by eval (vqa, region), the referring phrase, or ""
    sketches: list[Sketch] = field(default_factory=list)
    sketch_targets: list[int] = field(default_factory=list)  # object index each sketch points at
    seg_targets: list[int] = field(default_factory=list)  # object index of each [SEG], in reply order


def normalise_answer(text: str) -> str:
    """Lower case, single spaces, no end punctuation or article: what VQA and region answers are scored on."""
    words = text.lower().replace(".", " ").replace(",", " ").replace("?", " ").split()
    if words and words[0] in ("a", "an", "the"):
        words = words[1:]
    return " ".join(words)


def format_box(box_xyxy, image_hw: tuple[int, int]) -> str:
    values = Letterbox(*image_hw).box_to_normalized(box_xyxy)
    return "[" + ", ".join(f"{min(max(v, 0.0), 1.0):.2f}" for v in values) + "]"


def position_word(obj: SceneObject, size: int) -> str:
    """Which ninth of the image the visible centre falls in: "top left", "top", ..., "center", ..."""
    x, y = obj.centre_xy
    column = ("left", "", "right")[min(2, int(3 * x / size))]
    row = ("top", "", "bottom")[min(2, int(3 * y / size))]
    return " ".join(w for w in (row, column) if w) or "center"


def holds(relation: str, target: SceneObject, anchor: SceneObject, size: int) -> bool | None:
    """True / False when the relation clearly holds or fails, None when the centres are too close to tell."""
    axis, sign = RELATIONS[relation]
    delta = (target.centre_xy[axis] - anchor.centre_xy[axis]) * sign
    if abs(delta) < RELATION_MARGIN * size:
        return None
    return delta > 0


def _same(objects: list[SceneObject], **attrs) -> list[int]:
    return [i for i, o in enumerate(objects) if all(getattr(o.spec, k) == v for k, v in attrs.items())]


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _at(position: str) -> str:
    return "in the center" if position == "center" else f"at the {position}"


def _left_to_right(scene: Scene) -> list[int]:
    return sorted(range(len(scene.objects)), key=lambda i: scene.objects[i].centre_xy[0])


class InstructionMaker:
    """Draws one Sample of a task from a scene; `rng` decides templates and targets (seeded by the caller)."""

    def __init__(self, scene: Scene, rng: np.random.Generator):
        self.scene, self.rng = scene, rng
        self.size = scene.size
        self.hw = scene.image.shape[:2]

    def make(self, task: str) -> Sample | None:
        """A sample of `task`, or None when this scene cannot pose it (e.g. no unique object to refer to)."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
        return getattr(self, f"_{task}")()

    def _pick(self, items):
        return items[int(self.rng.integers(len(items)))]

    # -- referring expressions -------------------------------------------------------------------------------
    def unique_name(self, index: int) -> str | None:
        obj = self.scene.objects[index]
        if len(_same(self.scene.objects, colour=obj.spec.colour, shape=obj.spec.shape)) == 1:
            return f"the {obj.spec.colour} {obj.spec.shape}"
        return None

    def relational_name(self, index: int) -> str | None:
        """"the red circle left of the blue square": true of this object only among its colour-and-shape twins."""
        objects, size = self.scene.objects, self.size
        target = objects[index]
        twins = _same(objects, colour=target.spec.colour, shape=target.spec.shape)
        options = []
        for anchor_index in range(len(objects)):
            anchor_name = self.unique_name(anchor_index)
            if anchor_index in twins or anchor_name is None:
                continue
            for relation in RELATIONS:
                if holds(relation, target, objects[anchor_index], size) is not True:
                    continue
                if all(holds(relation, objects[t], objects[anchor_index], size) is False for t in twins if t != index):
                    options.append(f"the {target.spec.colour} {target.spec.shape} {relation} {anchor_name}")
        return self._pick(options) if options else None

    def referring_phrase(self, index: int) -> tuple[str, str] | None:
        """(phrase, "attribute" | "relational") for one object, or None when it cannot be singled out."""
        unique, relational = self.unique_name(index), self.relational_name(index)
        if unique and (relational is None or self.rng.random() < 0.6):
            return unique, "attribute"
        if relational:
            return relational, "relational"
        return None

    # -- tasks -----------------------------------------------------------------------------------------------
    def _object_phrase(self, obj: SceneObject, article: str = "a") -> str:
        return f"{article} {obj.spec.size_word} {obj.spec.colour} {obj.spec.shape}"

    def _caption(self) -> Sample:
        # Where each object is, in words: dense supervision that binds colour and shape to a place, which
        # position and relation questions need (a run without it answered "where is ...?" at chance).
        phrases = [
            f"{self._object_phrase(self.scene.objects[i])} {_at(position_word(self.scene.objects[i], self.size))}"
            for i in _left_to_right(self.scene)
        ]
        reply = f"{_join(phrases)} on a {self.scene.background} background."
        return Sample("caption", "caption", CAPTION_REQUEST, reply, answer=reply)

    def _grounded(self) -> Sample:
        order = _left_to_right(self.scene)
        phrases = [f"<p> {self._object_phrase(self.scene.objects[i])} </p> [SEG]" for i in order]
        reply = f"{_join(phrases)} on a {self.scene.background} background."
        return Sample("grounded", "grounded", GROUNDED_REQUEST, reply, seg_targets=list(order))

    def _referring(self) -> Sample | None:
        order = list(self.rng.permutation(len(self.scene.objects)))
        for index in order:
            named = self.referring_phrase(int(index))
            if named is None:
                continue
            phrase, kind = named
            template = self._pick(["segment {}.", "please segment {}.", "can you segment {}?", "find {} and segment it."])
            # No <Region> box: the [SEG] state finds the object. Taught to write one, this LLM's boxes missed
            # (cIoU 0.19 with one object), and teacher-forced true boxes let the [SEG] state read the location
            # off the box digits instead of finding the named object (lab/reports/refer_ablation.md).
            reply = f"<module>segmenter</module> <instruction>segmentation: {phrase}</instruction> [SEG]"
            return Sample("referring", kind, template.format(phrase), reply, answer=phrase, seg_targets=[int(index)])
        return None

    def _edit(self) -> Sample | None:
        from .edits import EDIT_TASKS, edit_case

        task = self._pick(EDIT_TASKS)
        case = edit_case(self.scene, task, self.rng)
        if case is None:
            return None
        return Sample("edit", task, case.request, edit_reply(case, self.hw), answer=case.instruction,
                      seg_targets=[] if case.target is None else [case.target])

    def _layout(self) -> Sample:
        from .edits import layout_case

        case = layout_case(int(self.rng.integers(2**31)), self.size, objects=int(self.rng.integers(1, 3)))
        return Sample("layout", "layout", case.request, edit_reply(case, self.hw), answer=case.instruction)

    def _everything(self) -> Sample:
        request = self._pick(["segment everything.", "segment all objects.", "give me masks of everything."])
        reply = "<module>segmenter</module> <instruction>everything: all objects</instruction>"
        return Sample("everything", "everything", request, reply)

    def _region(self) -> Sample:
        index = int(self.rng.integers(len(self.scene.objects)))
        obj = self.scene.objects[index]
        kind = self._pick(["point", "box", "scribble"])
        sketch = region_sketch(obj, kind, self.rng)
        request = self._pick(["what is this?", "what is in this region?", "what object is this?"])
        answer = f"{obj.spec.colour} {obj.spec.shape}"
        return Sample("region", kind, request, f"a {answer}", answer=answer, sketches=[sketch], sketch_targets=[index])

    def _grounded_qa(self) -> Sample | None:
        found = self._superlative()
        if found is None:
            return None
        word, index = found
        name = self.unique_name(index)
        request = f"which object is the {word}? show it."
        return Sample("grounded_qa", word, request, f"<p> {name} </p> [SEG]", answer=name, seg_targets=[index])

    def _superlative(self) -> tuple[str, int] | None:
        objects = self.scene.objects
        if len(objects) < 2:
            return None
        word = self._pick(["largest", "smallest"])
        ranked = sorted(range(len(objects)), key=lambda i: objects[i].area, reverse=word == "largest")
        first, second = objects[ranked[0]].area, objects[ranked[1]].area
        clear = first >= SUPERLATIVE_RATIO * second if word == "largest" else second >= SUPERLATIVE_RATIO * first
        if not clear or self.unique_name(ranked[0]) is None:
            return None
        return word, ranked[0]

    def _echo(self) -> Sample:
        colours, rng = list(COLOURS), self.rng
        words = [self._pick(colours), self._pick(list(SHAPES))]
        if rng.random() < 0.5:
            words += [self._pick(list(RELATIONS)), "the", self._pick(colours), self._pick(list(SHAPES))]
        phrase = "the " + " ".join(words)
        return Sample("echo", "echo", f"repeat: {phrase}.", phrase, answer=phrase)

    def _vqa(self, question_type: str | None = None) -> Sample | None:
        question_type = question_type or self._pick(list(VQA_TYPES))
        made = getattr(self, f"_vqa_{question_type}")()
        if made is None:
            return None
        request, answer = made
        return Sample("vqa", question_type, request, answer, answer=normalise_answer(answer))

    def _vqa_count(self):
        objects = self.scene.objects
        subject = self._pick(["objects", "shape", "colour", "colour shape"])
        ref = self._pick(objects).spec if self.rng.random() < 0.8 else None  # sometimes ask about an absent kind
        colour = ref.colour if ref else self._pick(["red", "green", "blue", "yellow", "purple"])
        shape = ref.shape if ref else self._pick(list(SHAPES))
        if subject == "objects":
            return "how many objects are there?", str(len(objects))
        if subject == "shape":
            return f"how many {shape}s are there?", str(len(_same(objects, shape=shape)))
        if subject == "colour":
            return f"how many {colour} objects are there?", str(len(_same(objects, colour=colour)))
        return f"how many {colour} {shape}s are there?", str(len(_same(objects, colour=colour, shape=shape)))

    def _vqa_colour(self):
        candidates = [i for i, o in enumerate(self.scene.objects) if len(_same(self.scene.objects, shape=o.spec.shape)) == 1]
        if not candidates:
            return None
        obj = self.scene.objects[self._pick(candidates)]
        return f"what colour is the {obj.spec.shape}?", obj.spec.colour

    def _vqa_shape(self):
        objects = self.scene.objects
        candidates = [i for i, o in enumerate(objects) if len(_same(objects, colour=o.spec.colour)) == 1]
        if not candidates:
            return None
        obj = objects[self._pick(candidates)]
        return f"what shape is the {obj.spec.colour} object?", obj.spec.shape

    def _vqa_position(self):
        candidates = [i for i in range(len(self.scene.objects)) if self.unique_name(i)]
        if not candidates:
            return None
        index = self._pick(candidates)
        return f"where is {self.unique_name(index)}?", position_word(self.scene.objects[index], self.size)

    def _vqa_relation(self):
        named = [i for i in range(len(self.scene.objects)) if self.unique_name(i)]
        if len(named) < 2:
            return None
        a, b = (int(i) for i in self.rng.choice(named, size=2, replace=False))
        relation = self._pick(list(RELATIONS))
        truth = holds(relation, self.scene.objects[a], self.scene.objects[b], self.size)
        if truth is None:
            return None
        return f"is {self.unique_name(a)} {relation} {self.unique_name(b)}?", "yes" if truth else "no"

    def _vqa_largest(self):
        found = self._superlative()
        if found is None:
            return None
        word, index = found
        return f"which object is the {word}?", self.unique_name(index)


def region_sketch(obj: SceneObject, kind: str, rng: np.random.Generator) -> Sketch:
    """A sketch a user might draw on `obj`: a point inside it, a loose box around it, or a short scribble on it."""
    import cv2

    inner = cv2.erode(obj.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    ys, xs = np.nonzero(inner if inner.any() else obj.mask)
    if kind == "point":
        k = int(rng.integers(len(xs)))
        return Sketch.point(xs[k] + 0.5, ys[k] + 0.5)
    if kind == "scribble":
        picks = rng.choice(len(xs), size=int(rng.integers(2, 5)), replace=True)
        return Sketch.scribble([(xs[k] + 0.5, ys[k] + 0.5) for k in picks])
    if kind == "box":
        height, width = obj.mask.shape
        x1, y1, x2, y2 = obj.box_xyxy
        jitter = rng.uniform(-1.5, 1.5, size=4)
        box = (max(0.0, x1 + jitter[0]), max(0.0, y1 + jitter[1]), min(width, x2 + jitter[2]), min(height, y2 + jitter[3]))
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            box = (x1, y1, x2, y2)
        return Sketch.box(*box)
    raise ValueError(f"unknown sketch kind {kind!r}; expected point, box or scribble")


def edit_reply(case, image_hw: tuple[int, int]) -> str:
    """The invocation an EditCase is asked with. Edits of an object carry a [SEG], which grounds the object and
    conditions the editor (no box: see _referring); an add carries the box the user gave; a layout's boxes are in
    its text."""
    call = f"<module>{case.module}</module> <instruction>{case.task}: {case.instruction}</instruction>"
    if case.task == "layout":
        return call
    if case.target is not None:
        return f"{call} [SEG]"
    return f"{call} <Region>{format_box(case.box_xyxy, image_hw)}</Region>"


def make_sample(scene: Scene, task: str, rng: np.random.Generator, attempts: int = 1) -> Sample | None:
    maker = InstructionMaker(scene, rng)
    for _ in range(attempts):
        sample = maker.make(task)
        if sample is not None:
            return sample
    return None
