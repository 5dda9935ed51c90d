"""`vitron-lab eval --suite video`: DAVIS J&F on held-out moving-shapes clips.

Through the product's own code:
- semi-supervised VOS (DAVIS 2017) on clips of two to four shapes (half of them look-alikes, where only where an
  object was tells it apart): each object's true first-frame mask starts a live-stream tracker (`StreamTracker`,
  frames fed one at a time); scored without the first and last frames, as DAVIS scores. Also the share of the other
  objects' pixels each track covers (a tracker must follow the object it was given).
- language-referred VOS: "segment the <colour> <shape>." goes through `VitronPipeline.ask_clip` (video encoder,
  LLM, segmenter on the key frame, tracker through the clip); scored on every frame, the first included.
- clip questions: one of each type (which way an object moved, how many objects, a colour, a shape) through
  `ask_clip`, exact match of the normalised answer.
"""

from __future__ import annotations

import time

import numpy as np

from vitron_ros.core.tracking.state import ObjectPrompt
from vitron_ros.core.video import ClipSampling

from ..shapes.instructions import normalise_answer
from ..shapes.video_instructions import VIDEO_QA_TYPES, clip_name, make_video_sample
from ..shapes.world import generate_clip
from .davis import DavisSummary, other_objects_covered, score_sequence

EVAL_SEED_BASE = 2_000_000_000  # training clips come from seeds below 1e9


def tracking_clip(n: int, frames: int, seed_base: int = EVAL_SEED_BASE):
    """Held-out clip `n` the tracker is scored on: two to four shapes, every other clip look-alikes (same colour and
    shape, so only where an object was tells it apart)."""
    return generate_clip(seed_base + n, frames=frames, min_objects=2, max_objects=4, twins=n % 2 == 1)


def evaluate_video(pipeline, clips: int = 40, frames: int = 24, seed_base: int = EVAL_SEED_BASE,
                   referring: bool = True, progress: bool = False) -> dict:
    """J&F of the profile's tracker (and of language-referred tracking) on `clips` held-out clips."""
    from tqdm import tqdm

    tracker_specialist = pipeline.specialists.get("tracker")
    if tracker_specialist is None:
        raise ValueError(f"profile {pipeline.profile_name!r} has no tracker to evaluate")
    vos_scores, referring_scores, step_seconds, covered = [], [], [], []
    answers: dict[str, list[bool]] = {kind: [] for kind in VIDEO_QA_TYPES}
    sampled = ClipSampling(frames=pipeline.llm.clip_frames).indices(frames)
    for n in tqdm(range(clips), desc="video eval", unit="clip", disable=not progress):
        clip = generate_clip(seed_base + n, frames=frames)
        # 1. Semi-supervised: true first-frame mask -> the live-stream tracker, every object in one stream
        tracked = tracking_clip(n, frames, seed_base)
        tracked_truths = [[tracked.masks[t][k] for t in range(frames)] for k in range(len(tracked.specs))]
        tracker = tracker_specialist.stream()
        ids = {k: tracker.add_object(ObjectPrompt(mask=truth[0])) for k, truth in enumerate(tracked_truths)
               if truth[0].any()}
        predicted = {k: [] for k in ids}
        for image in tracked.frames:
            tracks = tracker.step(image)
            step_seconds.append(tracks.seconds)
            for k, object_id in ids.items():
                predicted[k].append(tracks.by_id(object_id).mask)
        vos_scores += [score_sequence(predicted[k], tracked_truths[k]) for k in ids]
        for k in ids:
            others = [np.logical_or.reduce([tracked_truths[j][t] for j in range(len(tracked_truths)) if j != k]
                                           or [np.zeros_like(tracked_truths[k][t])]) for t in range(frames)]
            covered += other_objects_covered(predicted[k], others)
        truths = [[clip.masks[t][k] for t in range(frames)] for k in range(len(clip.specs))]
        # 2. Language-referred: the whole pipeline, clip in, mask sequence out
        if referring:
            for k in range(len(clip.specs)):
                name = clip_name(clip, k)
                if name is None or not truths[k][0].any():
                    continue
                result, _ = pipeline.ask_clip(clip.frames, f"segment {name}.")
                if result.tracks:
                    masks = list(result.tracks[0].masks)
                else:  # nothing grounded: an empty prediction in every frame
                    masks = [np.zeros_like(truths[k][0])] * frames
                referring_scores.append(score_sequence(masks, truths[k], skip_ends=False))
        # 3. Questions about the clip
        for kind in VIDEO_QA_TYPES:
            sample = make_video_sample(clip, sampled, np.random.default_rng([seed_base + n, 1]), kind=kind)
            if sample is not None:
                result, _ = pipeline.ask_clip(clip.frames, sample.request)
                answers[kind].append(normalise_answer(result.answer) == sample.answer)
    vos, ref = DavisSummary.of(vos_scores), DavisSummary.of(referring_scores)
    return {
        "clips": clips,
        "frames_per_clip": frames,
        "vos": {"j": vos.j_mean, "f": vos.f_mean, "j_and_f": vos.j_and_f, "objects": vos.objects,
                "other_objects_covered": float(np.mean(covered)) if covered else None, "covered_frames": len(covered)},
        "referring": {"j": ref.j_mean, "f": ref.f_mean, "j_and_f": ref.j_and_f, "objects": ref.objects},
        "clip_qa": {
            "accuracy": float(np.mean([a for values in answers.values() for a in values])) if any(answers.values())
            else 0.0,
            "by_type": {kind: (float(np.mean(v)) if v else None, len(v)) for kind, v in answers.items()},
        },
        "tracker_ms_per_frame": {
            "mean": 1000 * float(np.mean(step_seconds)),
            "median": 1000 * float(np.median(step_seconds)),
        },
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def format_video_report(report: dict) -> str:
    vos, ref, ms = report["vos"], report["referring"], report["tracker_ms_per_frame"]
    lines = [
        f"video suite: {report['clips']} held-out clips x {report['frames_per_clip']} frames",
        (f"  semi-supervised VOS (first-frame mask): J {vos['j']:.3f}  F {vos['f']:.3f}  J&F {vos['j_and_f']:.3f}"
         f"  ({vos['objects']} objects)"),
        (f"  language-referred VOS:                 J {ref['j']:.3f}  F {ref['f']:.3f}  J&F {ref['j_and_f']:.3f}"
         f"  ({ref['objects']} objects)"),
        (f"  share of the other objects covered by a track: {vos['other_objects_covered']:.3f}"
         f" ({vos['covered_frames']} object-frames with another object in view)"
         if vos.get("other_objects_covered") is not None else "  share of the other objects covered: no frame had two"),
        f"  tracker step: {ms['mean']:.1f} ms mean, {ms['median']:.1f} ms median per frame (all objects)",
        f"  clip questions: {report['clip_qa']['accuracy']:.3f} ("
        + ", ".join(f"{kind} {acc:.2f} of {n}" for kind, (acc, n) in report["clip_qa"]["by_type"].items() if n)
        + ")",
    ]
    return "\n".join(lines)
