"""`vitron eval --suite shapes`: the pipeline, end to end, on held-out ShapesWorld scenes.

Every query goes through `VitronPipeline.__call__` exactly as a user's would (greedy generation, the strict
parser, signal embeddings, SAM), so the scores measure the product, not a training-time shortcut. Scene seeds
start at EVAL_SEED_BASE, above every seed training draws from.
"""

from __future__ import annotations

import time

import numpy as np

from ..invocation import parse_reply
from ..masks import box_to_mask
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


def evaluate_shapes(pipeline, scenes: int = 200, seed_base: int = EVAL_SEED_BASE, progress: bool = False) -> dict:
    """Score `pipeline` on `scenes` held-out scenes; returns the report as a JSON-ready dict."""
    from tqdm import tqdm

    referring = {"all": SegmentationScore(), "attribute": SegmentationScore(), "relational": SegmentationScore()}
    text_box = SegmentationScore()  # the LLM's <Region> box alone, as a mask: how much SAM adds
    vqa = {t: Accuracy() for t in VQA_TYPES}
    region = {k: Accuracy() for k in ("point", "box", "scribble")}
    validity = Accuracy()
    grounded = {"phrases": 0, "pairs": 0, "denominator": 0}
    grounded_iou = SegmentationScore()
    grounded_qa = SegmentationScore()
    started = time.perf_counter()
    for offset in tqdm(range(scenes), desc="eval shapes", disable=not progress, dynamic_ncols=True):
        seed = seed_base + offset
        scene = generate_scene(seed, size=SCENE_SIZE)
        hw = scene.image.shape[:2]
        maker = InstructionMaker(scene, np.random.default_rng(seed))

        sample = maker.make("referring")
        if sample is not None:
            result, _ = pipeline(scene.image, sample.request)
            target = scene.objects[sample.seg_targets[0]].mask
            pred = _answer_mask(result, *hw)
            referring["all"].add(pred, target)
            referring[sample.kind].add(pred, target)
            validity.add(_valid_invocation(pipeline, result.raw_reply, hw, "segmentation"))
            boxes = [inv.box_xyxy for inv in result.invocations if inv.box_xyxy is not None]
            if boxes:
                text_box.add(box_to_mask(boxes[0], *hw), target)
            else:
                text_box.add(np.zeros(hw, bool), target)

        everything = maker.make("everything")
        query = pipeline._begin(scene.image, everything.request, [], None)
        reply, _ = pipeline.llm.generate(query.prompt)  # validity only: skip the automatic mask generator
        validity.add(_valid_invocation(pipeline, reply, hw, "everything"))

        for question_type in VQA_TYPES:
            sample = maker._vqa(question_type)
            if sample is None:
                continue
            result, _ = pipeline(scene.image, sample.request)
            vqa[question_type].add(normalise_answer(result.answer) == sample.answer)

        sample = maker.make("region")
        result, _ = pipeline(scene.image, sample.request, sample.sketches)
        region[sample.kind].add(normalise_answer(result.answer) == normalise_answer(sample.answer))

        result, _ = pipeline(scene.image, GROUNDED_REQUEST)
        truth = [(f"{o.spec.size_word} {o.spec.colour} {o.spec.shape}", o.mask)
                 for o in (scene.objects[i] for i in _left_to_right(scene))]
        predicted = [(normalise_answer(phrase), m.mask) for phrase, m in result.grounded_phrases]
        phrases, pairs = match_grounded(predicted, truth)
        grounded["phrases"] += phrases
        grounded["pairs"] += pairs
        grounded["denominator"] += max(len(predicted), len(truth))
        for phrase, m in result.grounded_phrases:  # mask quality of each phrase that names a unique object
            same = [o for name, o in truth if name == normalise_answer(phrase)]
            if len(same) == 1:
                grounded_iou.add(m.mask, same[0])

        sample = maker.make("grounded_qa")
        if sample is not None:
            result, _ = pipeline(scene.image, sample.request)
            grounded_qa.add(_answer_mask(result, *hw), scene.objects[sample.seg_targets[0]].mask)

    vqa_total = Accuracy(sum(a.correct for a in vqa.values()), sum(a.total for a in vqa.values()))
    region_total = Accuracy(sum(a.correct for a in region.values()), sum(a.total for a in region.values()))
    denominator = max(1, grounded["denominator"])
    return {
        "suite": "shapes",
        "profile": pipeline.profile_name,
        "scenes": scenes,
        "seed_base": seed_base,
        "referring": {k: v.as_dict() for k, v in referring.items()},
        "referring_text_box_only": text_box.as_dict(),
        "vqa": {"overall": vqa_total.as_dict(), **{k: v.as_dict() for k, v in vqa.items()}},
        "region": {"overall": region_total.as_dict(), **{k: v.as_dict() for k, v in region.items()}},
        "invocation_validity": {"rate": round(validity.rate, 4), "n": validity.total},
        "grounded": {
            "phrase_match": round(grounded["phrases"] / denominator, 4),
            "phrase_mask_match": round(grounded["pairs"] / denominator, 4),
            "mask": grounded_iou.as_dict(),
        },
        "grounded_qa": grounded_qa.as_dict(),
        "seconds": round(time.perf_counter() - started, 1),
    }


def format_report(report: dict) -> str:
    """The report as the table printed by `vitron eval`."""
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
    return "\n".join(lines)
