"""`vitron-lab eval --suite shapes`: the pipeline, end to end, on held-out ShapesWorld scenes.

Every query goes through `VitronPipeline.__call__` exactly as a user's would (greedy generation, the strict
parser, signal embeddings, SAM), so the scores measure the product, not a training-time shortcut. Scene seeds
start at EVAL_SEED_BASE, above every seed training draws from; scene k holds k % 5 + 1 objects, so each count from
one to five has a fifth of the scenes and the report gives every figure by count as well as overall.
"""

from __future__ import annotations

import time

import numpy as np

from vitron_ros.core.invocation import parse_reply
from vitron_ros.core.masks import box_to_mask

from ..shapes.instructions import (
    GROUNDED_REQUEST,
    VQA_TYPES,
    InstructionMaker,
    _left_to_right,
    normalise_answer,
)
from ..shapes.world import generate_scene
from .metrics import Accuracy, SegmentationScore, match_grounded

EVAL_SEED_BASE = 2_000_000_000  # training scene seeds are all below 1e9
SCENE_SIZE = 64


def _answer_mask(result, height: int, width: int) -> np.ndarray:
    """The mask a referring request produced: the first mask from an invocation, else nothing."""
    for mask in result.masks:
        if mask.invocation_index is not None:
            return mask.mask
    return np.zeros((height, width), bool)


def _valid_invocation(pipeline, raw_reply: str, hw, task: str) -> bool:
    parsed = parse_reply(raw_reply, hw, pipeline.modules, pipeline.llm.config.box_format)
    return (
        not parsed.errors
        and len(parsed.invocations) == 1
        and parsed.invocations[0].module == "segmenter"
        and parsed.invocations[0].task == task
    )


MAX_OBJECTS = 5  # held-out scenes hold 1..MAX_OBJECTS objects, in equal numbers (scene k: k % 5 + 1)


class _Tally:
    """Every score of the suite, for one group of scenes (all of them, or those with n objects)."""

    def __init__(self):
        self.referring = {"all": SegmentationScore(), "attribute": SegmentationScore(), "relational": SegmentationScore()}
        self.text_box = SegmentationScore()  # a <Region> box the LLM wrote, alone as a mask (replies that have one)
        self.vqa = {t: Accuracy() for t in VQA_TYPES}
        self.region = {k: Accuracy() for k in ("point", "box", "scribble")}
        self.validity = Accuracy()
        self.grounded = {"phrases": 0, "pairs": 0, "denominator": 0}
        self.grounded_iou = SegmentationScore()
        self.grounded_qa = SegmentationScore()

    def report(self) -> dict:
        vqa_total = Accuracy(sum(a.correct for a in self.vqa.values()), sum(a.total for a in self.vqa.values()))
        region_total = Accuracy(sum(a.correct for a in self.region.values()), sum(a.total for a in self.region.values()))
        denominator = max(1, self.grounded["denominator"])
        return {
            "referring": {k: v.as_dict() for k, v in self.referring.items()},
            "referring_text_box_only": self.text_box.as_dict(),
            "vqa": {"overall": vqa_total.as_dict(), **{k: v.as_dict() for k, v in self.vqa.items()}},
            "region": {"overall": region_total.as_dict(), **{k: v.as_dict() for k, v in self.region.items()}},
            "invocation_validity": {"rate": round(self.validity.rate, 4), "n": self.validity.total},
            "grounded": {
                "phrase_match": round(self.grounded["phrases"] / denominator, 4),
                "phrase_mask_match": round(self.grounded["pairs"] / denominator, 4),
                "mask": self.grounded_iou.as_dict(),
            },
            "grounded_qa": self.grounded_qa.as_dict(),
        }


def evaluate_shapes(pipeline, scenes: int = 200, seed_base: int = EVAL_SEED_BASE, progress: bool = False) -> dict:
    """Score `pipeline` on `scenes` held-out scenes; returns the report as a JSON-ready dict: the scores over every
    scene at the top level, and the same scores for the scenes of each object count under "by_objects"."""
    from tqdm import tqdm

    overall = _Tally()
    by_count = {n: _Tally() for n in range(1, MAX_OBJECTS + 1)}
    started = time.perf_counter()
    for offset in tqdm(range(scenes), desc="eval shapes", disable=not progress, dynamic_ncols=True):
        seed = seed_base + offset
        count = offset % MAX_OBJECTS + 1
        scene = generate_scene(seed, size=SCENE_SIZE, min_objects=count, max_objects=count)
        tallies = (overall, by_count[len(scene.objects)])
        hw = scene.image.shape[:2]
        maker = InstructionMaker(scene, np.random.default_rng(seed))

        sample = maker.make("referring")
        if sample is not None:
            result, _ = pipeline(scene.image, sample.request)
            target = scene.objects[sample.seg_targets[0]].mask
            pred = _answer_mask(result, *hw)
            valid = _valid_invocation(pipeline, result.raw_reply, hw, "segmentation")
            boxes = [inv.box_xyxy for inv in result.invocations if inv.box_xyxy is not None]
            for tally in tallies:
                tally.referring["all"].add(pred, target)
                tally.referring[sample.kind].add(pred, target)
                tally.validity.add(valid)
                if boxes:  # taught box-free replies; a box the LLM writes anyway is scored on its own
                    tally.text_box.add(box_to_mask(boxes[0], *hw), target)

        everything = maker.make("everything")
        query = pipeline._begin(scene.image, everything.request, [], None)
        reply, _ = pipeline.llm.generate(query.prompt)  # validity only: skip the automatic mask generator
        valid = _valid_invocation(pipeline, reply, hw, "everything")
        for tally in tallies:
            tally.validity.add(valid)

        for question_type in VQA_TYPES:
            sample = maker._vqa(question_type)
            if sample is None:
                continue
            result, _ = pipeline(scene.image, sample.request)
            for tally in tallies:
                tally.vqa[question_type].add(normalise_answer(result.answer) == sample.answer)

        sample = maker.make("region")
        result, _ = pipeline(scene.image, sample.request, sample.sketches)
        for tally in tallies:
            tally.region[sample.kind].add(normalise_answer(result.answer) == normalise_answer(sample.answer))

        result, _ = pipeline(scene.image, GROUNDED_REQUEST)
        truth = [(f"{o.spec.size_word} {o.spec.colour} {o.spec.shape}", o.mask)
                 for o in (scene.objects[i] for i in _left_to_right(scene))]
        predicted = [(normalise_answer(phrase), m.mask) for phrase, m in result.grounded_phrases]
        phrases, pairs = match_grounded(predicted, truth)
        for tally in tallies:
            tally.grounded["phrases"] += phrases
            tally.grounded["pairs"] += pairs
            tally.grounded["denominator"] += max(len(predicted), len(truth))
            for phrase, m in result.grounded_phrases:  # mask quality of each phrase that names a unique object
                same = [o for name, o in truth if name == normalise_answer(phrase)]
                if len(same) == 1:
                    tally.grounded_iou.add(m.mask, same[0])

        sample = maker.make("grounded_qa")
        if sample is not None:
            result, _ = pipeline(scene.image, sample.request)
            for tally in tallies:
                tally.grounded_qa.add(_answer_mask(result, *hw), scene.objects[sample.seg_targets[0]].mask)

    return {
        "suite": "shapes",
        "profile": pipeline.profile_name,
        "scenes": scenes,
        "seed_base": seed_base,
        **overall.report(),
        "by_objects": {str(n): tally.report() for n, tally in by_count.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


# (label, path into a report, target) of the headline figures, in the order the by-count table prints them
HEADLINE = (
    ("referring cIoU, attribute", ("referring", "attribute", "ciou"), 0.75),
    ("referring cIoU, relational", ("referring", "relational", "ciou"), 0.75),
    ("VQA accuracy", ("vqa", "overall", "accuracy"), 0.85),
    ("region understanding", ("region", "overall", "accuracy"), 0.85),
    ("grounded phrase+mask", ("grounded", "phrase_mask_match"), 0.6),
    ("invocation validity", ("invocation_validity", "rate"), 0.99),
)


def _figure(report: dict, path: tuple) -> float | None:
    """The number at `path`, or None where the report has none (or no sample: a relation needs two objects)."""
    for key in path:
        if not isinstance(report, dict) or key not in report:
            return None
        report = report[key]
    return None if report != report else report  # NaN: scored on no sample


def format_by_objects(report: dict, baseline: dict | None = None) -> str:
    """The headline figures by object count and overall (with a baseline report's, "now / before", when given)."""
    counts = sorted(report.get("by_objects", {}), key=int)
    header = f"{'by object count':<28}" + "".join(f"{n + ' obj':>14}" for n in counts) + f"{'all':>14}{'target':>8}"
    lines = [header]
    for label, path, target in HEADLINE:
        cells = []
        for part, base_part in [(report["by_objects"][n], (baseline or {}).get("by_objects", {}).get(n))
                                for n in counts] + [(report, baseline)]:
            value = _figure(part, path)
            before = _figure(base_part, path) if base_part is not None else None
            text = "-" if value is None else f"{value:.3f}"
            cells.append(f"{text} / {before:.3f}" if before is not None else text)
        lines.append(f"  {label:<26}" + "".join(f"{c:>14}" for c in cells) + f"{target:>8.2f}")
    if baseline is not None:
        lines.append(f"  (now / {baseline.get('profile', 'baseline')!r} from the baseline report)")
    return "\n".join(lines)


def format_report(report: dict, baseline: dict | None = None) -> str:
    """The report as the table printed by `vitron-lab eval`."""
    lines = [f"ShapesWorld eval: profile {report['profile']!r}, {report['scenes']} held-out scenes "
             f"(seeds {report['seed_base']}+), {report['seconds']} s"]
    ref = report["referring"]
    lines.append("referring segmentation      cIoU    gIoU     n")
    for kind in ("all", "attribute", "relational"):
        r = ref[kind]
        lines.append(f"  {kind:<24}{r['ciou']:>7.3f} {r['giou']:>7.3f} {r['n']:>5}")
    r = report["referring_text_box_only"]
    lines.append(f"  {'(LLM box alone)':<24}{r['ciou']:>7.3f} {r['giou']:>7.3f} {r['n']:>5}")
    lines.append("VQA accuracy                       n")
    for kind, value in report["vqa"].items():
        lines.append(f"  {kind:<24}{value['accuracy']:>7.3f} {value['n']:>5}")
    lines.append("region understanding")
    for kind, value in report["region"].items():
        lines.append(f"  {kind:<24}{value['accuracy']:>7.3f} {value['n']:>5}")
    v = report["invocation_validity"]
    lines.append(f"invocation validity         {v['rate']:>7.3f} {v['n']:>5}")
    g = report["grounded"]
    lines.append(f"grounded conversation: phrase match {g['phrase_match']:.3f}, phrase+mask (IoU>=0.5) "
                 f"{g['phrase_mask_match']:.3f}, mask cIoU {g['mask']['ciou']:.3f} (n={g['mask']['n']})")
    q = report["grounded_qa"]
    lines.append(f"grounded QA (largest/smallest) mask cIoU {q['ciou']:.3f} gIoU {q['giou']:.3f} (n={q['n']})")
    if report.get("by_objects"):
        lines.append(format_by_objects(report, baseline))
    return "\n".join(lines)
