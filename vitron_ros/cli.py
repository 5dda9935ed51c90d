"""`vitron` command line: query an image, replay a bag or video through the ROS handlers, fetch and list models.
Training, evaluation and building the tiny test profile are the lab's (`vitron-lab`, lab/), which robots do not
install.

Every failure the user can cause (missing or unreadable image, bad coordinates, unknown profile, missing
checkpoint) ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .core.errors import CheckpointLoadError, CheckpointNotFoundError, VitronInputError

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are VitronInputError, so `run_command` reports them in one line."""

    def error(self, message: str):  # argparse's default prints the whole usage block first
        raise VitronInputError(f"{self.prog}: {message}")


def _numbers(text: str, count: int, flag: str) -> tuple[float, ...]:
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != count or not all(math.isfinite(v) for v in values):
        shape = "X,Y" if count == 2 else "X1,Y1,X2,Y2"
        raise VitronInputError(f"{flag} {text!r}: expected {count} comma-separated numbers {shape}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vitron", description="VITRON pixel-level vision assistant")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    query = commands.add_parser("query", help="ask about an image; writes overlay.png and result.json")
    query.add_argument("image", help="image file (PNG, JPEG, ...)")
    query.add_argument("request", help='request in language, e.g. "segment the red mug"')
    query.add_argument("--point", action="append", default=[], metavar="X,Y", help="point sketch, pixels (repeatable)")
    query.add_argument("--box", action="append", default=[], metavar="X1,Y1,X2,Y2", help="box sketch, pixels")
    query.add_argument("--task", default=None, help="a task of the segmenter's (segmentation): the reply must ground the "
                       "request, so a mask comes back; default: the model decides")
    query.add_argument("--profile", default="default", help="model profile from config/profiles.yaml")
    query.add_argument("--profiles-file", default=None, help="profiles YAML (default: the package's)")
    query.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    query.add_argument("--out", default="vitron_out", help="folder for overlay.png and result.json")
    query.add_argument("--json", action="store_true", help="print result.json to stdout instead of a summary")
    query.add_argument("--depth", default=None, help="depth aligned to IMAGE: 16-bit PNG (mm), float TIFF or .npy (m); "
                                                     "each mask gets its 3D position (needs --intrinsics)")
    query.add_argument("--intrinsics", default=None, metavar="FX,FY,CX,CY", help="pinhole intrinsics of IMAGE, pixels")
    _runtime_options(query)

    edit = commands.add_parser("edit", help="edit an image by request; writes before.png, edited.png, result.json")
    edit.add_argument("image", help="image file (PNG, JPEG, ...)")
    edit.add_argument("request", help='the edit in language, e.g. "remove the red circle"')
    generate = commands.add_parser("generate", help="generate an image by request; writes generated.png, result.json")
    generate.add_argument("request", help='e.g. "a picture of a red circle left of a blue square"')
    generate.add_argument("--image", default=None, help="image the LLM sees with the request (default: a blank one)")
    generate_video = commands.add_parser("generate-video", help="generate a clip by request (text-to-video, or "
                                                                "image-to-video with --image); writes "
                                                                "generated_video.mp4, a contact sheet, result.json")
    generate_video.add_argument("request", help='e.g. "a red circle moving to the left", or with --image '
                                                '"show me how the cup would move to the left"')
    generate_video.add_argument("--image", default=None, help="the image the clip starts from (image-to-video) and the "
                                                              "LLM sees (default: a blank one, text-to-video)")
    for command, out in ((edit, "vitron_edit"), (generate, "vitron_generate"),
                         (generate_video, "vitron_generate_video")):
        command.add_argument("--reply", default=None,
                             help="carry out this invocation reply instead of generating one, e.g. "
                                  "'<module>editor</module> <instruction>remove: the red circle</instruction> [SEG]'")
        command.add_argument("--profile", default="default", help="model profile from config/profiles.yaml")
        command.add_argument("--profiles-file", default=None, help="profiles YAML (default: the package's)")
        command.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
        command.add_argument("--out", default=out, help="folder for the images and result.json")
        command.add_argument("--json", action="store_true", help="print result.json to stdout instead of a summary")
        _runtime_options(command)

    replay = commands.add_parser("replay", help="run the ROS node's handlers over a bag or video; write a bag")
    replay.add_argument("input", help="rosbag2 folder (sqlite3 or MCAP), .mcap/.db3 file, or video file")
    replay.add_argument("--query", default=None, help="request answered on every processed frame")
    replay.add_argument("--track", action="append", default=[], metavar="REQUEST",
                        help='object to track from the first frame on, in language, e.g. "the red circle" (repeatable)')
    replay.add_argument("--track-box", action="append", default=[], metavar="X1,Y1,X2,Y2",
                        help="object to track from a box on the first frame, pixels (repeatable)")
    replay.add_argument("--out", required=True, help="output rosbag2 folder (must not exist)")
    replay.add_argument("--topic", default=None, help="image topic to read (default: the bag's only image topic)")
    replay.add_argument("--depth-topic", default=None,
                        help="the bag's depth aligned to --topic (16UC1 mm or 32FC1 m; camera_info beside it or beside "
                             "the image): masks and tracks get 3D, /vitron/detections_3d and markers are written")
    replay.add_argument("--every", type=int, default=1, help="process every N-th frame")
    replay.add_argument("--max-frames", type=int, default=None, help="stop after this many processed frames")
    replay.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"), help="output bag storage")
    replay.add_argument("--no-overlay", action="store_true", help="leave /vitron/overlay out of the output")
    replay.add_argument("--profile", default="default", help="model profile from config/profiles.yaml")
    replay.add_argument("--profiles-file", default=None, help="profiles YAML (default: the package's)")
    replay.add_argument("--device", default="cpu", help="auto, cpu or cuda[:N]")

    track = commands.add_parser("track", help="track objects through a video file, frame by frame; writes overlays")
    track.add_argument("video", help="video file OpenCV can read (mp4, avi, ...)")
    track.add_argument("--track", action="append", default=[], metavar="REQUEST",
                       help='object to track, in language, e.g. "the red mug" (repeatable)')
    track.add_argument("--track-box", action="append", default=[], metavar="X1,Y1,X2,Y2",
                       help="object to track from a box on the first frame, pixels (repeatable)")
    track.add_argument("--ask", default=None, help="also ask this question about the clip (frames sampled over it)")
    track.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    track.add_argument("--profile", default="default", help="model profile from config/profiles.yaml")
    track.add_argument("--profiles-file", default=None)
    track.add_argument("--device", default="cpu", help="auto, cpu or cuda[:N]")
    track.add_argument("--out", default="vitron_track", help="folder for overlay.mp4, strip.png and tracks.jsonl")

    edit_video = commands.add_parser("edit-video", help="edit an object through a video: tracked, frame by frame; "
                                                        "writes edited.mp4, sheet.png, result.json")
    edit_video.add_argument("video", help="video file OpenCV can read (mp4, avi, ...)")
    edit_video.add_argument("request", help='the edit in language, e.g. "remove the red circle"')
    edit_video.add_argument("--reply", default=None, help="carry out this invocation reply on the first frame instead "
                                                          "of generating one (as `vitron edit --reply`)")
    edit_video.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    edit_video.add_argument("--profile", default="default", help="model profile from config/profiles.yaml")
    edit_video.add_argument("--profiles-file", default=None)
    edit_video.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    edit_video.add_argument("--out", default="vitron_edit_video", help="folder for edited.mp4, sheet.png, result.json")

    models = commands.add_parser("models", help="list or fetch model profiles")
    model_commands = models.add_subparsers(dest="models_command", required=True, parser_class=OneLineParser)
    fetch = model_commands.add_parser("fetch", help="download a profile's checkpoints once, for offline use")
    fetch.add_argument("--profile", default="default")
    fetch.add_argument("--profiles-file", default=None)
    listing = model_commands.add_parser("list", help="list profiles and whether their checkpoints are here")
    listing.add_argument("--profiles-file", default=None)

    doctor = commands.add_parser("doctor", help="check this machine (torch, GPU, ROS 2, interfaces, checkpoints, "
                                 "backends, memory); each failure with a one-line fix; exit 1 when one fails")
    doctor.add_argument("--profile", default="default", help="the profile to check (default: the node's default)")
    doctor.add_argument("--profiles-file", default=None)
    doctor.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda[:N]', as the node's parameter")
    doctor.add_argument("--no-hash", action="store_true", help="skip hashing checkpoint files (slow for large ones)")
    doctor.add_argument("--json", action="store_true", help="print the results as JSON instead of a report")

    engines = commands.add_parser("engines", help="export and build a profile's encoder engines ahead of time")
    engine_commands = engines.add_subparsers(dest="engines_command", required=True, parser_class=OneLineParser)
    build = engine_commands.add_parser("build", help="export, build into the engine cache, check against PyTorch")
    build.add_argument("--profile", default="default")
    build.add_argument("--profiles-file", default=None)
    build.add_argument("--backend", default="tensorrt", choices=("onnxruntime", "tensorrt"),
                       help="falls back along the profile's runtime.fallback where it cannot run, and says so")
    build.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]: engines are built for this GPU")
    build.add_argument("--precision", default=None, choices=("float16", "bfloat16", "float32"),
                       help="on CUDA; default: the profile's")
    return parser


def _runtime_options(command) -> None:
    command.add_argument("--backend", default=None, choices=("torch", "onnxruntime", "tensorrt"),
                         help="encoders' backend (falls back visibly where it cannot run); default: the profile's")
    command.add_argument("--precision", default=None, choices=("float16", "bfloat16", "float32"),
                         help="every model's dtype on CUDA (CPU: float32); default: the profile's")


def _load_profile(args):
    """The profile named by --profile, with --backend / --precision (where the command has them) over its runtime."""
    import dataclasses

    from .core.config import load_profile

    profile = load_profile(args.profile, args.profiles_file)
    changes = {k: v for k in ("backend", "precision") if (v := getattr(args, k, None)) is not None}
    return dataclasses.replace(profile, runtime=dataclasses.replace(profile.runtime, **changes)) if changes else profile


def _legible(image, masks, min_side: int = 256):
    """Small images (ShapesWorld's 64 px) are drawn enlarged, pixel for pixel, so labels and edges stay readable."""
    import numpy as np

    factor = max(1, -(-min_side // max(image.shape[:2])))
    if factor == 1:
        return image, masks
    def enlarge(array):
        return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)

    return enlarge(image), [enlarge(m) for m in masks]


def _query(args) -> int:
    from .core.image_io import load_image, save_image
    from .core.overlay import render_overlay
    from .core.pipeline import VitronPipeline
    from .core.sketch import Sketch

    profile = _load_profile(args)
    image = load_image(args.image)
    sketches = [Sketch.point(*_numbers(p, 2, "--point")) for p in args.point]
    sketches += [Sketch.box(*_numbers(b, 4, "--box")) for b in args.box]
    height, width = image.shape[:2]
    for i, sketch in enumerate(sketches):  # fail before the (slow) model load
        sketch.validate(height, width, name=f"{'--point' if sketch.kind == 'point' else '--box'} #{i + 1}")
    depth, camera = _depth_input(args, (height, width))

    pipeline = VitronPipeline.from_profile(profile, device=args.device, progress=_progress)
    result, _ = pipeline(image, args.request, sketches, task=args.task)
    lifted = []
    if depth is not None:
        from .core.lifting import lift_mask

        lifted = [lift_mask(m.mask, depth, camera, box_xyxy=m.box_xyxy) for m in result.masks]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overlay = render_overlay(*_legible(image, [m.mask for m in result.masks]), [m.label for m in result.masks])
    save_image(out / "overlay.png", overlay)
    payload = result.to_json()
    for entry, found in zip(payload["masks"], lifted, strict=False):
        entry["object_3d"] = found.to_json()  # camera optical frame, metres
    (out / "result.json").write_text(json.dumps(payload, indent=2))

    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    print(f"answer: {result.answer}")
    for i, m in enumerate(result.masks):
        box = ", ".join(f"{v:.0f}" for v in m.box_xyxy)
        print(f"  mask {i}: {m.label!r} score={m.score:.3f} box=[{box}] area={int(m.mask.sum())} via {m.source}")
        if i < len(lifted):
            print(f"    3D: {_describe_3d(lifted[i])}")
    for error in result.errors:
        print(f"  note: {error}")
    stages = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result.timings.items())
    print(f"timings: {stages}")
    print(f"wrote {out / 'overlay.png'} and {out / 'result.json'}")
    return 0


def _depth_input(args, image_hw):
    """--depth and --intrinsics -> (DepthImage, PinholeCamera), checked against the image; (None, None) without."""
    from .core.image_io import load_depth
    from .core.lifting import PinholeCamera

    if (args.depth is None) != (args.intrinsics is None):
        raise VitronInputError("--depth and --intrinsics go together: the depth's pixels are lifted through the intrinsics")
    if args.depth is None:
        return None, None
    depth = load_depth(args.depth)
    if depth.shape != tuple(image_hw):
        raise VitronInputError(f"--depth is {depth.shape[1]}x{depth.shape[0]} but the image is {image_hw[1]}x{image_hw[0]}: "
                               "the depth must be aligned to the image (registered to the colour camera)")
    return depth, PinholeCamera.parse(args.intrinsics)


def _describe_3d(found) -> str:
    if not found.ok:
        return f"none ({found.reason})"
    x, y, z = found.centroid
    sx, sy, sz = found.box_size
    hidden = f", partly hidden ({found.occluded_share:.0%} of its outline)" if found.occluded_share > 0.1 else ""
    return (f"centroid ({x:+.3f}, {y:+.3f}, {z:.3f}) m, {found.distance:.3f} m away, size {sx:.3f} x {sy:.3f} x {sz:.3f} m, "
            f"{found.inliers} depth pixels{hidden} (camera optical frame)")


def _denoise_progress(stage: str, text: str) -> None:
    if stage == "denoise":
        print(f"\rdenoising step {text}", end="", file=sys.stderr, flush=True)
    elif stage.endswith("_answer"):
        print(f"{stage[: -len('_answer')]} ...", file=sys.stderr, flush=True)


def _edit(args) -> int:
    """`vitron edit`, `vitron generate` and `vitron generate-video`: the request through VITRON; every image and
    clip it makes is written (a clip as an mp4 and a contact sheet of six of its frames)."""
    import numpy as np

    from .core.image_io import load_image, save_image
    from .core.pipeline import VitronPipeline

    profile = _load_profile(args)
    if args.command == "edit" or args.image:
        image = load_image(args.image)  # fail before the (slow) model load
    else:
        image = np.full((64, 64, 3), 127, np.uint8)  # the LLM always sees an image; here a blank one
    pipeline = VitronPipeline.from_profile(profile, device=args.device, progress=_progress)
    if args.reply:
        result = pipeline.ground_reply(image, args.request, args.reply, progress=_denoise_progress)
    else:
        result, _ = pipeline(image, args.request, progress=_denoise_progress)
    print(file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = result.to_json()
    written = []
    if args.command == "edit":
        save_image(out / "before.png", image)
    for i, made in enumerate(result.images):
        name = f"{made.kind}.png" if i == 0 else f"{made.kind}_{i}.png"
        save_image(out / name, made.image)
        payload["images"][i]["file"] = name
        written.append(name)
    clips = []
    for i, video in enumerate(result.videos):
        name = video.kind if i == 0 else f"{video.kind}_{i}"
        write_clip(out / f"{name}.mp4", video.frames, video.fps or 8.0)
        save_image(out / f"{name}_sheet.png", contact_sheet(video.frames))
        payload["videos"][i].update(file=f"{name}.mp4", sheet=f"{name}_sheet.png")
        clips.append(name)
    (out / "result.json").write_text(json.dumps(payload, indent=2))
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        print(f"answer: {result.answer}")
        for made, name in zip(result.images, written, strict=True):
            print(f"  {made.kind} ({made.specialist} {made.task}): {made.label!r}, {int(made.region.sum())} pixels "
                  f"changed -> {out / name} (synthetic)")
        for video, name in zip(result.videos, clips, strict=True):
            frames, height, width = video.frames.shape[:3]
            print(f"  {video.kind} ({video.specialist} {video.task}): {video.label!r}, {frames} frames {width}x{height} "
                  f"at {video.fps:g} fps -> {out / name}.mp4, {out / name}_sheet.png (synthetic)")
        for error in result.errors:
            print(f"  note: {error}")
        print(f"timings: {', '.join(f'{k} {v * 1000:.0f} ms' for k, v in result.timings.items())}")
    made = result.videos if args.command == "generate-video" else result.images
    if not made:
        what = {"edit": "edited", "generate": "generated", "generate-video": "generated (no clip)"}[args.command]
        callee = "the video generator" if args.command == "generate-video" else "neither the editor nor the generator"
        reasons = "; ".join(result.errors) or f"the reply {result.raw_reply!r} calls {callee}"
        raise VitronInputError(f"nothing was {what}: {reasons}")
    return 0


def open_mp4(path: Path, fps: float, width: int, height: int):
    """An OpenCV mp4v writer (BGR frames), or a clear error where it cannot write there."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise VitronInputError(f"cannot write {path}: not writable, or OpenCV has no mp4v encoder here")
    return writer


def write_clip(path: Path, frames, fps: float) -> None:
    """(T, H, W, 3) uint8 RGB frames -> an mp4."""
    import numpy as np

    writer = open_mp4(path, fps, frames.shape[2], frames.shape[1])
    for rgb in frames:
        writer.write(np.ascontiguousarray(rgb[..., ::-1]))
    writer.release()


def contact_sheet(frames, count: int = 6):
    """`count` frames spread evenly over a clip, side by side."""
    import numpy as np

    picks = sorted({round(i * (len(frames) - 1) / (count - 1)) for i in range(count)})
    return np.concatenate([frames[i] for i in picks], axis=1)


def _replay(args) -> int:
    from .core.config import load_profile
    from .core.tracking.state import ObjectPrompt
    from .ros.replay import check_output, open_input, replay, replay_handlers

    profile = load_profile(args.profile, args.profiles_file)
    out = Path(args.out)
    check_output(out, args.every, args.storage)  # fail before the (slow) model load
    track = [ObjectPrompt(request=r) for r in args.track]
    track += [ObjectPrompt(box_xyxy=_numbers(b, 4, "--track-box")) for b in args.track_box]
    if not args.query and not track:
        raise VitronInputError("replay needs --query, --track or --track-box")
    if track and profile.section("tracker") is None:
        raise VitronInputError(f"profile {profile.name!r} has no tracker; --track needs one")
    source = open_input(Path(args.input), args.topic, args.depth_topic)
    handlers = replay_handlers(profile, args.device, overlay=not args.no_overlay, progress=_progress,
                               depth_topic=args.depth_topic or "")
    summary = replay(handlers, source, args.query, out, args.every, args.max_frames, args.storage, track=tuple(track))
    if args.query:
        print(f"answered {summary.frames_answered} frame(s) of {summary.topic}; wrote {summary.out}")
    if track:
        print(f"tracked {', '.join(summary.object_ids)}: visible in {summary.frames_tracked} frame(s) of "
              f"{summary.topic}; wrote {summary.out}")
    for error in summary.errors:
        print(f"  {error}")
    return 0


def _edit_video(args) -> int:
    """Read, track, edit and write a video one frame at a time (memory does not grow with its length)."""
    import cv2
    import numpy as np
    from tqdm import tqdm

    from .core.config import load_profile
    from .core.image_io import save_image
    from .core.pipeline import VitronPipeline
    from .core.video_edit import TrackedEdit

    profile = load_profile(args.profile, args.profiles_file)
    if args.max_frames is not None and args.max_frames < 2:
        raise VitronInputError(f"--max-frames {args.max_frames}: a video edit needs at least 2 frames")
    capture = cv2.VideoCapture(args.video)
    if not Path(args.video).is_file() or not capture.isOpened():
        raise VitronInputError(f"cannot open video {args.video}: not a file OpenCV can read")
    ok, first = capture.read()
    if not ok:
        raise VitronInputError(f"video {args.video} has no readable frame")
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    limit = min(x for x in (args.max_frames, total) if x) if (args.max_frames or total) else None
    if limit is not None and limit < 2:
        raise VitronInputError(f"video {args.video} has {limit} frame: a video edit needs at least 2")
    pipeline = VitronPipeline.from_profile(profile, device=args.device, progress=_progress)
    first = np.ascontiguousarray(first[..., ::-1])
    edit = TrackedEdit.start(pipeline, first, args.request, args.reply, progress=_denoise_progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    writer = open_mp4(out / "edited.mp4", fps, first.shape[1], first.shape[0])
    frames, sheet, stride, rgb = [], [], 1, first
    with tqdm(total=limit, desc="edit-video", unit="frame") as bar:
        while rgb is not None:
            done = edit.step(rgb)
            writer.write(np.ascontiguousarray(done.image[..., ::-1]))
            frames.append({"frame": done.index, "edited": done.edited, "region_pixels": int(done.region.sum()),
                           "seconds": round(done.seconds, 3), "notes": done.notes})
            for note in done.notes:
                tqdm.write(f"frame {done.index}: {note}", file=sys.stderr)
            if done.index % stride == 0:  # a contact sheet over the whole video, thinned as it grows
                sheet.append(np.concatenate([rgb, done.image], axis=0))
                if len(sheet) > 40:
                    sheet, stride = sheet[::2], stride * 2
            bar.update(1)
            if args.max_frames is not None and done.index + 1 >= args.max_frames:
                break
            ok, bgr = capture.read()
            rgb = np.ascontiguousarray(bgr[..., ::-1]) if ok else None
    capture.release()
    writer.release()
    if len(frames) < 2:
        raise VitronInputError(f"video {args.video} has {len(frames)} frame: a video edit needs at least 2")
    save_image(out / "sheet.png", contact_sheet(sheet))
    result = {"request": args.request, "synthetic": True, "answer": edit.plan.answer, "raw_reply": edit.plan.raw_reply,
              "edits": [e.label for e in edit.edits], "frames": frames, "frames_edited": edit.edited_frames,
              "errors": edit.plan.errors}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(f"edited {edit.edited_frames} of {len(frames)} frame(s) ({', '.join(e.label for e in edit.edits)}); "
          f"wrote {out / 'edited.mp4'} (synthetic), {out / 'sheet.png'} (source above, edited below) and "
          f"{out / 'result.json'}")
    return 0


def _track(args) -> int:
    """Stream a video through the tracker: frames are read, tracked and written one at a time."""
    import dataclasses

    import cv2
    import numpy as np
    from tqdm import tqdm

    from .core.config import load_profile
    from .core.geometry import check_box
    from .core.image_io import save_image
    from .core.overlay import render_tracks
    from .core.pipeline import VitronPipeline
    from .core.tracking.state import ObjectPrompt, ObjectStatus

    profile = load_profile(args.profile, args.profiles_file)
    prompts = [ObjectPrompt(request=r) for r in args.track]
    prompts += [ObjectPrompt(box_xyxy=_numbers(b, 4, "--track-box")) for b in args.track_box]
    if not prompts and not args.ask:
        raise VitronInputError("track needs --track, --track-box or --ask")
    if profile.section("tracker") is None:
        raise VitronInputError(f"profile {profile.name!r} has no tracker section")
    capture = cv2.VideoCapture(args.video)
    if not Path(args.video).is_file() or not capture.isOpened():
        raise VitronInputError(f"cannot open video {args.video}: not a file OpenCV can read")
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width and height:  # boxes are checked against the video before any model loads
        for i, prompt in enumerate(p for p in prompts if p.box_xyxy is not None):
            check_box(prompt.box_xyxy, width, height, name=f"--track-box {i + 1} {args.track_box[i]}")
    pipeline = VitronPipeline.from_profile(profile, device=args.device, progress=_progress)
    tracker = pipeline.specialists["tracker"].stream(grounder=pipeline.ground_request)
    ids = [tracker.add_object(prompt) for prompt in prompts]
    labels = {object_id: tracker.state.objects[object_id].label for object_id in ids}  # removed objects keep theirs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    writer, overlays, clip, frames_read, stride = None, [], [], 0, 1
    counts = {object_id: dict.fromkeys(ObjectStatus, 0) for object_id in ids}
    limit = args.max_frames if args.max_frames is not None else total
    with (out / "tracks.jsonl").open("w") as log, tqdm(total=limit, desc="track", unit="frame") as bar:
        while args.max_frames is None or frames_read < args.max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            frames_read += 1
            bar.update(1)
            rgb = np.ascontiguousarray(bgr[..., ::-1])
            if args.ask:
                clip.append(rgb)
            if not ids:
                continue
            tracks = tracker.step(rgb)
            log.write(json.dumps(tracks.to_json()) + "\n")
            for state in tracks.objects:
                counts[state.object_id][state.status] += 1
            for error in tracks.errors:  # a prompt that did not fit the video, a request not found...
                tqdm.write(f"frame {tracks.frame_index}: {error}", file=sys.stderr)
            # small frames are drawn enlarged so ids and labels stay readable
            image, masks = _legible(rgb, [s.mask for s in tracks.objects])
            shown = dataclasses.replace(tracks, objects=[dataclasses.replace(s, mask=m)
                                                         for s, m in zip(tracks.objects, masks, strict=True)])
            overlay = render_tracks(image, shown)
            if writer is None:
                writer = open_mp4(out / "overlay.mp4", fps, overlay.shape[1], overlay.shape[0])
            writer.write(np.ascontiguousarray(overlay[..., ::-1]))
            # the contact sheet needs a few frames spread over the video: keep every stride-th, thinning as it grows,
            # so a long video never sits in memory
            if (frames_read - 1) % stride == 0:
                overlays.append(overlay)
                if len(overlays) > 40:
                    overlays, stride = overlays[::2], stride * 2
    capture.release()
    if writer is not None:
        writer.release()
        save_image(out / "strip.png", contact_sheet(overlays, 5))
        for object_id in ids:
            seen = ", ".join(f"{status.value} {n}" for status, n in counts[object_id].items())
            gone = "" if object_id in tracker.state.objects else ", removed (see the error above)"
            print(f"{object_id} ({labels[object_id]}): {seen} frame(s){gone}")
        print(f"wrote {out / 'overlay.mp4'}, {out / 'strip.png'} and {out / 'tracks.jsonl'}")
    if args.ask:
        if not clip:
            raise VitronInputError(f"video {args.video} has no frames")
        result, _ = pipeline.ask_clip(clip, args.ask)
        print(f"answer about {len(clip)} frames: {result.answer}")
    return 0


def _progress(message: str) -> None:
    print(message, file=sys.stderr)


def _models(args) -> int:
    from .core.config import load_profile, load_profiles
    from .core.fetch import fetch_profile

    if args.models_command == "fetch":
        fetch_profile(load_profile(args.profile, args.profiles_file))
        return 0
    for name, profile in load_profiles(args.profiles_file).items():
        parts = [f"llm={profile.llm.model}"]
        for key, section in profile.specialists.items():
            where = str(getattr(section, "checkpoint", None) or getattr(section, "model", ""))
            parts.append(f"{key}={where} ({'present' if Path(where).exists() else 'missing'})")
        print(f"{name}: " + " ".join(parts))
    return 0


def _doctor(args) -> int:
    import dataclasses

    from .doctor import doctor_context, exit_code, format_report, run_checks

    results = run_checks(doctor_context(args.profile, args.profiles_file, args.device, hash_files=not args.no_hash))
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    else:
        print(f"vitron doctor: profile {args.profile!r}")
        print(format_report(results))
    return exit_code(results)


def _engines(args) -> int:
    import dataclasses

    from .core.config import load_profile
    from .core.engines import build_engines
    from .core.pipeline import check_device

    profile = load_profile(args.profile, args.profiles_file)
    if args.precision:
        profile = dataclasses.replace(profile, runtime=dataclasses.replace(profile.runtime, precision=args.precision))
    reports = build_engines(profile, args.backend, check_device(args.device), progress=_progress)
    for report in reports:
        print(report.line())
    if not all(r.on_requested for r in reports):
        print(f"vitron: {args.backend} could not run every encoder here; the fallbacks above were checked instead",
              file=sys.stderr)
    return 0 if all(r.ok and r.on_requested for r in reports) else 1


def run_command(parser: argparse.ArgumentParser, commands: dict, argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen command's function; every failure a user can cause (bad input, a missing or
    broken checkpoint, an unwritable file, a network failure during fetch) is one line on stderr and exit code 2."""
    try:
        args = parser.parse_args(argv)
        return commands[args.command](args)
    except (VitronInputError, CheckpointNotFoundError, CheckpointLoadError, OSError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    commands = {"query": _query, "edit": _edit, "generate": _edit, "generate-video": _edit, "replay": _replay,
                "track": _track, "edit-video": _edit_video, "models": _models, "engines": _engines,
                "doctor": _doctor}
    return run_command(build_parser(), commands, argv)


if __name__ == "__main__":
    sys.exit(main())
