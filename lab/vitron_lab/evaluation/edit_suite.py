"""`vitron-lab eval --suite edit`: image editing and layout generation on held-out ShapesWorld scenes, exactly.

Every edit has a true result: the scene re-rendered with the object removed, recoloured, replaced, moved or added,
inside the region the editor may change (shapes/edits.py). Scored through the product's own code:

- end to end: the user's request ("make the red circle blue.") through `VitronPipeline` (LLM, segmenter, editor);
- given invocation: the invocation the LLM is taught, teacher-forced (`ground_reply`), so the editor is measured on
  the right call; run three ways for the signal-embedding ablation: text only, [SEG] embedding only, both.

Per edit: MagicBrush's L1 and L2 over the whole image (pixels 0-1), L1 inside the true edit region, the largest
change outside the region the output reports (must be 0: the editor composites), the share of pixels changed
outside the true region (a wrong or too large mask), and success read from the pixels (right colour and shape at the right place, the removed object gone). Layouts: each requested object
present with box IoU >= 0.5 and the right colour and shape.
"""

from __future__ import annotations

import numpy as np

from ..shapes.edits import EDIT_TASKS, edit_case, layout_case, read_edit
from ..shapes.instructions import edit_reply
from ..shapes.world import generate_scene

EVAL_SEED_BASE = 2_000_000_000  # training scenes come from seeds below 1e9
ABLATION = ("text", "signal", "both")
TARGETS = {"remove": ("l1_region", "<=", 0.05), "recolour": ("success", ">=", 0.9), "layout": ("success", ">=", 0.8)}


def score(case, result) -> dict:
    """One edit's figures from a VitronResult (no image: the input counts as the output, and success is False)."""
    images = [image for image in result.images if image.kind in ("edited", "generated")]
    output = images[0].image if images else case.source
    if output.shape != case.truth.shape:  # a generator at another side: its layout boxes are 0-1, so scale it
        import cv2

        output = cv2.resize(output, case.truth.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    error = np.abs(output.astype(np.float32) - case.truth.astype(np.float32)) / 255.0
    region = case.region
    outside, spill = 0.0, 0.0
    if images and case.task != "layout":
        changed = np.abs(output.astype(np.int16) - case.source.astype(np.int16)).max(axis=-1)
        # compositing: nothing outside the region the editor reports may change, by even one level
        outside = float(changed[~images[0].region].max()) if (~images[0].region).any() else 0.0
        # grounding: pixels changed outside the true edit region (a segmenter mask too big, or on the wrong object)
        spill = float((changed[~region] > 0).mean()) if (~region).any() else 0.0
    read = read_edit(case, output) if images else {"success": False, "objects": [False] * len(case.expect)}
    return {
        "produced": bool(images),
        "l1": float(error.mean()),
        "l2": float((error ** 2).mean()),
        "l1_region": float(error[region].mean()) if region is not None and region.any() else float(error.mean()),
        "outside": outside,
        "spill": spill,
        "success": bool(read["success"]),
        "objects": [bool(o) for o in read["objects"]],
    }


def _summary(rows: list[dict]) -> dict:
    if not rows:
        return {"n": 0}
    objects = [o for r in rows for o in r["objects"]]
    return {
        "n": len(rows),
        "produced": float(np.mean([r["produced"] for r in rows])),
        "l1": float(np.mean([r["l1"] for r in rows])),
        "l2": float(np.mean([r["l2"] for r in rows])),
        "l1_region": float(np.mean([r["l1_region"] for r in rows])),
        "outside_max": float(max(r["outside"] for r in rows)),
        "spill": float(np.mean([r["spill"] for r in rows])),
        "success": float(np.mean([r["success"] for r in rows])),
        "object_success": float(np.mean(objects)) if objects else None,
    }


def ablation_pipelines(pipeline) -> dict:
    """The pipeline with its editor conditioned by text only, by the [SEG] embedding only, and by both."""
    from vitron_ros.core.pipeline import VitronPipeline

    editor = pipeline.specialists["editor"]
    return {mode: VitronPipeline(pipeline.llm, {**pipeline.specialists, "editor": editor.with_conditioning(mode)},
                                 pipeline.profile_name) for mode in ABLATION}


def evaluate_edit(pipeline, scenes: int = 50, seed_base: int = EVAL_SEED_BASE, ablation: bool = True,
                  progress: bool = False) -> dict:
    from tqdm import tqdm

    if "editor" not in pipeline.specialists or "generator" not in pipeline.specialists:
        raise ValueError(f"profile {pipeline.profile_name!r} needs an editor and a generator for the edit suite")
    variants = ablation_pipelines(pipeline) if ablation else {}
    has_signal = pipeline.specialists["editor"].signal_dim is not None
    rows: dict[str, dict[str, list]] = {task: {"end_to_end": [], "given": []} for task in (*EDIT_TASKS, "layout")}
    for task in EDIT_TASKS:
        rows[task].update({f"given_{mode}": [] for mode in variants})
    for n in tqdm(range(scenes), desc="edit eval", unit="scene", disable=not progress):
        scene = generate_scene(seed_base + n)
        rng = np.random.default_rng([seed_base + n, 9])
        hw = scene.image.shape[:2]
        for task in EDIT_TASKS:
            case = edit_case(scene, task, rng)
            if case is None:
                continue
            result, _ = pipeline(case.source, case.request)
            rows[task]["end_to_end"].append(score(case, result))
            reply = edit_reply(case, hw)
            rows[task]["given"].append(score(case, pipeline.ground_reply(case.source, case.request, reply)))
            for mode, variant in variants.items():
                if mode == "signal" and (case.target is None or not has_signal):
                    continue  # an add has no [SEG]; a checkpoint without a projector has no signal half
                result = variant.ground_reply(case.source, case.request, reply)
                rows[task][f"given_{mode}"].append(score(case, result))
        case = layout_case(seed_base + n)
        result, _ = pipeline(scene.image, case.request)
        rows["layout"]["end_to_end"].append(score(case, result))
        given = pipeline.ground_reply(scene.image, case.request, edit_reply(case, hw))
        rows["layout"]["given"].append(score(case, given))
    report = {task: {way: _summary(r) for way, r in ways.items()} for task, ways in rows.items()}
    report["targets"] = {
        task: {"metric": metric, "target": f"{op} {value}", "given": report[task]["given"].get(metric),
               "end_to_end": report[task]["end_to_end"].get(metric)}
        for task, (metric, op, value) in TARGETS.items()
    }
    report["scenes"] = scenes
    return report


def format_edit_report(report: dict) -> str:
    def number(value, digits=3):
        return "-" if value is None else f"{value:.{digits}f}"

    lines = ["| task | invocation | n | produced | L1 | L2 | L1 in region | max change outside its region | "
             "changed outside the true region | success |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for task in (*EDIT_TASKS, "layout"):
        for way in ("end_to_end", "given"):
            s = report[task][way]
            if not s.get("n"):
                continue
            success = number(s["success"], 2)
            if task == "layout":
                success += f" (objects {number(s['object_success'], 2)})"
            lines.append(f"| {task} | {way.replace('_', ' ')} | {s['n']} | {number(s['produced'], 2)} | "
                         f"{number(s['l1'])} | {number(s['l2'])} | {number(s['l1_region'])} | "
                         f"{s['outside_max']:.0f} | {s['spill']:.3f} | {success} |")
    ablation = [task for task in EDIT_TASKS if report[task].get("given_both", {}).get("n")]
    if ablation:
        lines += ["", "Signal-embedding ablation (given invocation; success / L1 in region):", "",
                  "| task | text only | [SEG] embedding only | both |", "|---|---|---|---|"]
        for task in ablation:
            cells = []
            for mode in ABLATION:
                s = report[task].get(f"given_{mode}", {})
                cells.append(f"{number(s['success'], 2)} / {number(s['l1_region'])}" if s.get("n") else "n/a")
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines += ["", "Targets (held-out scenes):"]
    for task, t in report["targets"].items():
        lines.append(f"  {task} {t['metric']} {t['target']}: given invocation {number(t['given'])}, "
                     f"end to end {number(t['end_to_end'])}")
    return "\n".join(lines)
