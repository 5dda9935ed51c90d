"""Where a SAM 2 tracker loses its object: J and the other shapes covered, frame by frame, and whether it reads prompts.

    .venv/bin/python bench/tracker_drift.py [FOLDER ...] [--clips 20] [--frames 24]

FOLDER: transformers Sam2Video checkpoints (default: the shapes profile's tracker). For each, on held-out clips of
two to four moving shapes (every other clip look-alikes, as `vitron-lab eval --suite video` draws them), every
object's true first-frame mask starts a live-stream tracker (`StreamTracker`, the product's path), and per frame
prints the mean J of the prompted object and the share of the other objects' pixels its mask covers, for distinct
and look-alike clips. Then the prompt check: frame-0 J when the tracker is started from the object's box instead of
its mask, and how far SAM 2's mask logits move between two boxes at opposite corners of the same frame (a decoder
that ignores its prompts moves them by almost nothing).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from vitron_lab.evaluation.video_suite import EVAL_SEED_BASE, tracking_clip
from vitron_lab.shapes.world import generate_clip
from vitron_ros.core.config import load_profile
from vitron_ros.core.specialists.tracker import TrackerConfig
from vitron_ros.core.masks import iou, mask_to_box
from vitron_ros.core.model.sam2_loader import load_sam2_video
from vitron_ros.core.tracking.state import ObjectPrompt
from vitron_ros.core.tracking.stream_tracker import StreamTracker


def drift(model, processor, folder: str, clips: int, frames: int) -> dict:
    curves = {kind: {"j": np.zeros(frames), "n": np.zeros(frames), "covered": np.zeros(frames), "m": np.zeros(frames)}
              for kind in ("distinct", "look-alike")}
    for n in range(clips):
        kind = "look-alike" if n % 2 else "distinct"
        clip = tracking_clip(n, frames)
        truths = [[clip.masks[t][k] for t in range(frames)] for k in range(len(clip.specs))]
        tracker = StreamTracker(model, processor, TrackerConfig(model=folder))
        ids = {k: tracker.add_object(ObjectPrompt(mask=truth[0])) for k, truth in enumerate(truths) if truth[0].any()}
        curve = curves[kind]
        for t, image in enumerate(clip.frames):
            tracks = tracker.step(image)
            for k, object_id in ids.items():
                predicted, truth = tracks.by_id(object_id).mask, truths[k][t]
                if truth.any():
                    curve["j"][t] += iou(predicted, truth)
                    curve["n"][t] += 1
                others = np.logical_or.reduce([truths[j][t] for j in range(len(truths)) if j != k])
                if others.any():
                    curve["covered"][t] += (predicted & others).sum() / others.sum()
                    curve["m"][t] += 1
    return curves


def prompt_check(model, processor, folder: str, clips: int) -> tuple[float, float]:
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    j, moved = [], []
    for n in range(clips):
        clip = generate_clip(EVAL_SEED_BASE + n, frames=1, min_objects=2, max_objects=4)
        truth = clip.masks[0][0]
        if truth.any():
            tracker = StreamTracker(model, processor, TrackerConfig(model=folder))
            object_id = tracker.add_object(ObjectPrompt(box_xyxy=mask_to_box(truth)))
            predicted = tracker.step(clip.frames[0]).by_id(object_id).mask
            j.append(iou(predicted, truth))
        pixels = processor(images=clip.frames[0], return_tensors="pt").pixel_values[0]
        logits = []
        for box in ([2.0, 2.0, 22.0, 22.0], [42.0, 42.0, 62.0, 62.0]):
            session = Sam2VideoInferenceSession(video_height=64, video_width=64, dtype=torch.float32)
            processor.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=[1], input_boxes=[[box]],
                                                      original_size=(64, 64))
            with torch.inference_mode():
                logits.append(model(inference_session=session, frame=pixels, frame_idx=0).pred_masks.clone())
        moved.append(float((logits[0] - logits[1]).abs().max()))
    return float(np.mean(j)), float(np.median(moved))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*")
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--frames", type=int, default=24)
    args = parser.parse_args()
    folders = args.folders or [load_profile("shapes").section("tracker").model]
    np.set_printoptions(precision=2, linewidth=160, suppress=True)
    for folder in folders:
        model, processor = load_sam2_video(folder)
        print(f"== {folder} ({model.config.image_size} px input)")
        for kind, curve in drift(model, processor, folder, args.clips, args.frames).items():
            j, covered = curve["j"] / np.maximum(curve["n"], 1), curve["covered"] / np.maximum(curve["m"], 1)
            middle = slice(1, args.frames - 1)  # as DAVIS scores: without the first and last frames
            print(f"  {kind:10s} J {curve['j'][middle].sum() / curve['n'][middle].sum():.3f}, other objects covered "
                  f"{curve['covered'][middle].sum() / curve['m'][middle].sum():.3f}")
            print(f"    J by frame       {j}")
            print(f"    covered by frame {covered}")
        box_j, moved = prompt_check(model, processor, folder, args.clips)
        print(f"  started from a box: frame-0 J {box_j:.3f}; mask logits moved by {moved:.3f} (median of the max "
              f"change) between boxes at opposite corners")


if __name__ == "__main__":
    main()
