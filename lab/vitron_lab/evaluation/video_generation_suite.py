"""`vitron-lab eval --suite video-gen`: text-to-video and image-to-video on held-out ShapesWorld motion clips, read back.

Each held-out clip (`shapes.motion`) gives a caption ("a red circle moving left and a blue square moving up") and
its first frame. Text-to-video is asked for the caption; image-to-video is given the first frame and asked for its
first object's motion ("the red circle moves left"). The product's path runs (the video generator's invocation given
to the pipeline, as the LLM is taught to write it), and the clip that comes back is read with `read_motion`, which
knows nothing of the model: is each requested object there (its colour, read as its shape, in at least 75 % of the
frames), and did its centroid travel the requested way (at least 6 % of the side, mostly along that axis)?
The same reader on the true clips gives its own accuracy, the ceiling; chance for a direction is 0.25.

Image-to-video also reports how far the clip's first frame is from the image (L1, pixels 0-1), and both report the
mean frame-to-frame change (a clip that does not move has 0).
"""

from __future__ import annotations

import numpy as np

from ..shapes.motion import motion_clip, read_motion

EVAL_SEED_BASE = 2_300_000_000  # held out: training clips come from seeds below 1e9
PRESENT = 0.75  # share of frames an object must be read in to count as present


def invocation(task: str, instruction: str) -> str:
    """The video generator's invocation, as the LLM is taught to write it."""
    return f"<module>video_generator</module> <instruction>{task}: {instruction}</instruction>"


def _score(frames, objects) -> list[dict]:
    """Per requested (spec, direction): present, moved the right way."""
    rows = []
    for spec, direction in objects:
        motion = read_motion(frames, spec.colour, spec.shape)
        present = motion.present >= PRESENT
        rows.append({"present": present, "direction": present and motion.direction == direction,
                     "read": motion.direction})
    return rows


def _summary(rows: list[dict], clips: list[bool], changes: list[float]) -> dict:
    return {
        "objects": len(rows),
        "present": float(np.mean([r["present"] for r in rows])) if rows else 0.0,
        "direction": float(np.mean([r["direction"] for r in rows])) if rows else 0.0,
        "clip_success": float(np.mean(clips)) if clips else 0.0,
        "change": float(np.mean(changes)) if changes else 0.0,
    }


def _change(frames) -> float:
    return float(np.mean([np.abs(a.astype(np.float32) - b).mean() / 255.0 for a, b in zip(frames[1:], frames[:-1])]))


def evaluate_video_generation(pipeline, clips: int = 20, progress: bool = False) -> dict:
    from vitron_ros.core.errors import VitronInputError

    with pipeline.specialists.using("video_generator") as generator:
        frames, size, tasks = generator.config.frames, generator.config.resolution, generator.tasks
    if "image_to_video" not in tasks:
        raise VitronInputError("the video-gen suite scores image-to-video too: the profile's video_generator needs an "
                               "image_controlnet")
    report = {"clips": clips, "frames": frames, "size": size}
    blank = np.full((size, size, 3), 127, np.uint8)
    rows = {"truth": [], "text_to_video": [], "image_to_video": []}
    success = {key: [] for key in rows}
    changes = {key: [] for key in rows}
    first_l1 = []
    for k in range(clips):
        clip = motion_clip(EVAL_SEED_BASE + k, frames, size)
        objects = list(zip(clip.specs, clip.directions, strict=True))
        truth = _score(clip.frames, objects)
        rows["truth"] += truth
        success["truth"].append(all(r["direction"] for r in truth))
        changes["truth"].append(_change(clip.frames))
        cases = (("text_to_video", blank, clip.caption, objects),
                 ("image_to_video", clip.frames[0], clip.request(0), objects[:1]))
        for task, image, instruction, wanted in cases:
            result = pipeline.ground_reply(image, instruction, invocation(task, instruction))
            if not result.videos:
                raise RuntimeError(f"{task} made no clip for {instruction!r}: {'; '.join(result.errors)}")
            video = result.videos[0].frames
            scored = _score(list(video), wanted)
            rows[task] += scored
            success[task].append(all(r["direction"] for r in scored))
            changes[task].append(_change(video))
            if task == "image_to_video":
                first_l1.append(float(np.abs(video[0].astype(np.float32) - image).mean() / 255.0))
        if progress:
            print(f"video-gen: clip {k + 1}/{clips}", flush=True)
    for key in rows:
        report[key] = _summary(rows[key], success[key], changes[key])
    report["image_to_video"]["first_frame_l1"] = float(np.mean(first_l1)) if first_l1 else 0.0
    return report


def format_video_generation_report(report: dict) -> str:
    lines = [f"{report['clips']} held-out motion clips, {report['frames']} frames at {report['size']} px; objects read "
             f"from the frames (present in >= {PRESENT:.0%} of them, centroid travel >= 6 % of the side)", "",
             "| clips from | objects | present | moving the requested way | clips all right | frame-to-frame change |",
             "|---|---|---|---|---|---|"]
    names = {"truth": "the true clips (the reader's ceiling)", "text_to_video": "text-to-video (caption)",
             "image_to_video": "image-to-video (frame 0 + one object's motion)"}
    for key, name in names.items():
        r = report[key]
        lines.append(f"| {name} | {r['objects']} | {r['present']:.2f} | {r['direction']:.2f} | {r['clip_success']:.2f} "
                     f"| {r['change']:.3f} |")
    lines += ["", f"Image-to-video first frame against the image: L1 {report['image_to_video']['first_frame_l1']:.3f} "
                  "(pixels 0-1). Chance for a direction: 0.25."]
    return "\n".join(lines)
