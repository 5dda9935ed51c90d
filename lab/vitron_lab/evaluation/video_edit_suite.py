"""`vitron-lab eval --suite video-edit`: objects removed or recoloured through held-out ShapesWorld clips, exactly.

Each clip's truth is the clip re-rendered with the object removed (or painted the new colour) in every frame, from
the clip's own shapes and positions, so every pixel's right answer is known. The edit runs through the product's
code (`TrackedEdit`): the invocation the LLM is taught is given for the first frame (the object's box), the tracker
follows the object and the editor edits each frame inside its mask.

Per frame: L1 (pixels 0-1) inside the true edit region (the pixels where the truth differs from the source) and
outside it; success read from the pixels (removed: under 10 % of the object's true pixels still in its colour;
recoloured: at least 60 % of them in the new colour). Temporal consistency: the mean absolute frame-to-frame change
inside the clip's edit region (pixels 0-1), ours next to the truth's own (a removal's truth is mostly still).
"""

from __future__ import annotations

import numpy as np

from ..shapes.world import COLOURS, ShapeSpec, compose, generate_clip, render_background

EVAL_SEED_BASE = 2_200_000_000  # held out: training clips come from seeds below 1e9
TASKS = ("remove", "recolour")
COLOUR_TOLERANCE = 60  # max per-channel distance for a pixel to count as a colour
# a removal's truth is often still (the background where the object was): flicker is judged as ours <= 1.5 x the
# truth's change + this floor (pixels 0-1), not as a ratio to almost nothing
FLICKER_FLOOR = 0.01


def _change(frames, region: np.ndarray) -> float:
    """Mean absolute frame-to-frame change inside `region`, pixels 0-1."""
    return float(np.mean([np.abs(a.astype(np.float32) - b)[region].mean() / 255.0 for a, b in zip(frames[1:], frames[:-1])]))


def _specs_at(clip, t: int, size: int) -> list[ShapeSpec]:
    return [ShapeSpec(s.shape, s.colour, x / size, y / size, s.extent, s.angle)
            for s, (x, y) in zip(clip.specs, clip.tracks[t], strict=True)]


def _is_colour(image: np.ndarray, colour: str) -> np.ndarray:
    return (np.abs(image.astype(np.int16) - np.array(COLOURS[colour])) <= COLOUR_TOLERANCE).all(-1)


def video_edit_case(seed: int, task: str, frames: int, size: int = 64):
    """(clip, target index, request, reply, truth frames, true masks per frame, new colour) for one clip."""
    clip = generate_clip(seed, frames=frames, size=size, max_objects=3)
    visible = [int(m.sum()) for m in clip.masks[0]]
    target = int(np.argmax(visible))
    spec = clip.specs[target]
    background = render_background(clip.background, size, np.random.default_rng([seed, 1]))
    new_colour = next(c for c in COLOURS if c != spec.colour and all(c != s.colour for s in clip.specs))
    truth, masks = [], []
    for t in range(frames):
        specs = _specs_at(clip, t, size)
        if task == "remove":
            kept = specs[:target] + specs[target + 1:]
            image, _, _ = compose(kept, background)
        else:
            specs[target] = ShapeSpec(spec.shape, new_colour, specs[target].cx, specs[target].cy, spec.extent, spec.angle)
            image, _, _ = compose(specs, background)
        truth.append(image)
        masks.append(clip.masks[t][target])
    name = f"the {spec.colour} {spec.shape}"
    instruction = f"remove: {name}" if task == "remove" else f"recolour: {name} to {new_colour}"
    reply = f"<module>editor</module> <instruction>{instruction}</instruction> [SEG]"  # as the shapes LLM is taught
    request = f"remove {name}." if task == "remove" else f"make {name} {new_colour}."
    return clip, target, request, reply, truth, masks, new_colour


def evaluate_video_edit(pipeline, clips: int = 10, frames: int = 8, progress: bool = False) -> dict:
    from vitron_ros.core.video_edit import TrackedEdit

    report = {"clips": clips, "frames": frames}
    for task in TASKS:
        rows, flicker = [], []
        for k in range(clips):
            clip, target, request, reply, truth, masks, colour = video_edit_case(EVAL_SEED_BASE + k, task, frames)
            edit = TrackedEdit.start(pipeline, clip.frames[0], request, reply)
            outputs = [edit.step(frame).image for frame in clip.frames]
            for t, (out, want, source) in enumerate(zip(outputs, truth, clip.frames, strict=True)):
                region = (want != source).any(-1)
                error = np.abs(out.astype(np.float32) - want.astype(np.float32)) / 255.0
                obj = masks[t]
                if task == "remove":
                    success = bool(obj.any()) and _is_colour(out, clip.specs[target].colour)[obj].mean() < 0.1
                else:
                    success = bool(obj.any()) and _is_colour(out, colour)[obj].mean() >= 0.6
                rows.append({"l1_region": float(error[region].mean()) if region.any() else 0.0,
                             "l1_outside": float(error[~region].mean()), "success": success, "visible": bool(obj.any())})
            union = np.any([(w != s).any(-1) for w, s in zip(truth, clip.frames, strict=True)], axis=0)
            if union.any():
                flicker.append((_change(outputs, union), _change(truth, union)))
            if progress:
                print(f"video-edit {task}: clip {k + 1}/{clips}", flush=True)
        seen = [r for r in rows if r["visible"]]
        report[task] = {
            "frames": len(rows),
            "l1_region": float(np.mean([r["l1_region"] for r in rows])),
            "l1_outside": float(np.mean([r["l1_outside"] for r in rows])),
            "success": float(np.mean([r["success"] for r in seen])) if seen else 0.0,
            "change": float(np.mean([ours for ours, _ in flicker])) if flicker else 0.0,
            "truth_change": float(np.mean([true for _, true in flicker])) if flicker else 0.0,
        }
    report["targets"] = {
        "remove l1_region <= 0.06": report["remove"]["l1_region"] <= 0.06,
        "recolour success >= 0.85": report["recolour"]["success"] >= 0.85,
        "flicker within 1.5x the truth's (+0.01)": all(
            report[t]["change"] <= 1.5 * report[t]["truth_change"] + FLICKER_FLOOR for t in TASKS),
    }
    return report


def format_video_edit_report(report: dict) -> str:
    lines = [f"{report['clips']} held-out clips x {report['frames']} frames, given invocation on the first frame, "
             "tracked through the rest", "",
             "| task | frames | L1 in region | L1 outside | success per frame | frame-to-frame change in region: "
             "ours / truth |",
             "|---|---|---|---|---|---|"]
    for task in TASKS:
        r = report[task]
        lines.append(f"| {task} | {r['frames']} | {r['l1_region']:.3f} | {r['l1_outside']:.4f} | {r['success']:.2f} | "
                     f"{r['change']:.3f} / {r['truth_change']:.3f} |")
    lines += ["", "Targets: " + ", ".join(f"{name} ({'met' if ok else 'NOT met'})" for name, ok in report["targets"].items())]
    return "\n".join(lines)
