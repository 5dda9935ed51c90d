"""`vitron replay`: the node's handlers over a recorded bag or a video, results written as a rosbag2.

Input: a rosbag2 folder (sqlite3 or MCAP), a bare .mcap / .db3 file, or a video file OpenCV can read.
Output: a rosbag2 (MCAP by default) holding, per processed frame, the input image and what the node would publish
(`/vitron/answer`, `/vitron/masks`, `/vitron/detections`, `/vitron/overlay` for a query;
`/vitron/tracks` and `/vitron/tracks_overlay` for tracking; with a depth topic also `/vitron/detections_3d`,
`/vitron/markers`, `/vitron/tracks_3d` and `/vitron/tracks_markers`), with the message definitions embedded so
`ros2 bag`, rviz (through `ros2 bag play`) and Foxglove can open it.

With `depth_topic` (a bag's aligned depth, and its camera_info beside it or the image's), each image is processed
once the next image (or the end of the bag) is read, so its depth, recorded a few milliseconds after it, is there:
matched by stamp, as the node does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import VitronInputError
from ..core.tracking.state import ObjectPrompt
from .depth import CameraDepth, DepthLifter
from .frame_buffer import CameraFrames
from .handlers import VitronHandlers
from .image_conversions import numpy_to_image
from .interfaces import TypestoreFactory, header, typestore
from .parameters import camera_info_topic

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
VIDEO_TOPIC = "/camera/image"
OUTPUT_NAMESPACE = "/vitron"
CAMERA = "replay"


@dataclass
class InputMessage:
    topic: str
    msgtype: str
    timestamp_ns: int
    msg: object  # a rosbags message (Image or CompressedImage)


@dataclass
class ReplaySummary:
    frames_answered: int = 0
    frames_tracked: int = 0  # frames where at least one tracked object was visible
    object_ids: list[str] = field(default_factory=list)  # ids of the objects --track started
    errors: list[str] = field(default_factory=list)  # per-frame errors, "frame N: ..."
    topic: str = ""
    out: str = ""


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def read_bag_images(path: Path, topic: str | None = None,
                    depth_topic: str | None = None) -> tuple[str, int, Iterator[InputMessage]]:
    """(topic, message count, messages) for `topic`, or the bag's only image topic when None; with `depth_topic`
    the messages also hold that depth topic's and the camera_infos beside both topics, in the bag's order."""
    from rosbags.highlevel import AnyReader

    reader = AnyReader([path], default_typestore=typestore())
    try:
        reader.open()
    except Exception as error:  # noqa: BLE001 - rosbags raises several types for unreadable bags
        raise VitronInputError(f"cannot read bag {path}: {type(error).__name__}: {error}") from None
    images = {c.topic: c for c in reader.connections if c.msgtype in IMAGE_TYPES}
    if depth_topic is not None:
        if depth_topic not in images:
            reader.close()
            raise VitronInputError(f"bag {path} has no depth image topic {depth_topic!r}; image topics: "
                                   f"{', '.join(sorted(images))}")
        depth_connection = images.pop(depth_topic)
    if topic is None:
        if len(images) != 1:
            reader.close()
            found = ", ".join(sorted(images)) or "none"
            raise VitronInputError(f"bag {path} has {len(images)} image topics ({found}); choose one with --topic")
        topic = next(iter(images))
    if topic not in images:
        reader.close()
        raise VitronInputError(f"bag {path} has no image topic {topic!r}; image topics: {', '.join(sorted(images))}")
    connection = images[topic]
    wanted = [connection]
    if depth_topic is not None:
        infos = {camera_info_topic(topic), camera_info_topic(depth_topic)}
        wanted += [depth_connection, *(c for c in reader.connections if c.msgtype == CAMERA_INFO and c.topic in infos)]

    def messages() -> Iterator[InputMessage]:
        try:
            for conn, timestamp, raw in reader.messages(connections=wanted):
                yield InputMessage(conn.topic, conn.msgtype, timestamp, reader.deserialize(raw, conn.msgtype))
        finally:
            reader.close()

    return topic, connection.msgcount, messages()


def read_video_frames(path: Path, frame_id: str = "camera") -> tuple[str, int, Iterator[InputMessage]]:
    """A video as bgr8 Image messages (OpenCV's own channel order: no per-frame reorder here) stamped by their
    position in the video."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VitronInputError(f"cannot open video {path}: OpenCV could not read it")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    factory = TypestoreFactory()

    def messages() -> Iterator[InputMessage]:
        index = 0
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                stamp = int(round(index / fps * 1e9))
                msg = numpy_to_image(bgr, "bgr8", factory, header(factory, stamp, frame_id))
                yield InputMessage(VIDEO_TOPIC, "sensor_msgs/msg/Image", stamp, msg)
                index += 1
        finally:
            capture.release()

    return VIDEO_TOPIC, count, messages()


@dataclass
class ReplayInput:
    topic: str
    count: int  # messages on `topic` (frames in a video), for progress
    messages: Iterator[InputMessage]  # the images, and with a depth topic its images and the camera_infos
    depth_topic: str = ""


def open_input(source: Path, topic: str | None = None, depth_topic: str | None = None) -> ReplayInput:
    """Open a bag or video and pick its image topic; errors name what is wrong before any model is loaded."""
    if not source.exists():
        raise VitronInputError(f"input {source} does not exist")
    if depth_topic and is_video(source):
        raise VitronInputError("--depth-topic needs a bag: a video file has no depth")
    if is_video(source):
        return ReplayInput(*read_video_frames(source))
    return ReplayInput(*read_bag_images(source, topic, depth_topic or None), depth_topic=depth_topic or "")


def check_output(out: Path, every: int, storage: str) -> None:
    if every < 1:
        raise VitronInputError(f"--every must be >= 1, got {every}")
    if storage not in ("mcap", "sqlite3"):
        raise VitronInputError(f"--storage must be 'mcap' or 'sqlite3', got {storage!r}")
    if out.exists():
        raise VitronInputError(f"output {out} already exists; rosbag2 writes a new folder")


def replay(
    handlers: VitronHandlers,
    source: ReplayInput,
    request: str | None,
    out: Path,
    every: int = 1,
    max_frames: int | None = None,
    storage: str = "mcap",
    show_progress: bool = True,
    track: tuple[ObjectPrompt, ...] = (),
) -> ReplaySummary:
    """Answer `request` on every `every`-th image of `source` and/or track the `track` prompts through them (as
    AddObjects before the first frame would); write `out`."""
    if not request and not track:
        raise VitronInputError("nothing to replay: give a query, objects to track, or both")
    from rosbags.rosbag2 import StoragePlugin, Writer
    from tqdm import tqdm

    check_output(out, every, storage)
    topic, count, messages = source.topic, source.count, source.messages
    frames = handlers.cameras[CAMERA]
    store = typestore()
    summary = ReplaySummary(topic=topic, out=str(out))
    tracking = handlers.tracking_for(CAMERA) if track else None
    summary.object_ids = [tracking.add(prompt) for prompt in track] if tracking else []
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    total = -(-count // every) if max_frames is None else min(-(-count // every), max_frames)  # processed frames
    with Writer(out, version=8, storage_plugin=plugin) as writer:
        connections = {}

        def write(name: str, msgtype: str, msg, timestamp: int) -> None:
            if name not in connections:
                connections[name] = writer.add_connection(name, msgtype, typestore=store)
            writer.write(connections[name], timestamp, store.serialize_cdr(msg, msgtype))

        depth = handlers.lifter.depth.get(CAMERA) if handlers.lifter is not None else None
        if source.depth_topic and depth is None:
            raise VitronInputError("the input has a depth topic but the handlers have no depth: replay_handlers(depth=True)")

        def process(index: int, item: InputMessage) -> None:
            added = frames.add_compressed(item.msg) if item.msgtype.endswith("CompressedImage") else frames.add_image(item.msg)
            if not added:
                summary.errors.append(f"frame {index}: {frames.stats().last_error}")
                return
            step = tracking.process(frames.latest()) if tracking is not None else None
            if step is not None:
                for name, msgtype, msg in step.messages():
                    write(f"{OUTPUT_NAMESPACE}/{name}", msgtype, msg, item.timestamp_ns)
                summary.errors.extend(f"frame {index}: {warning}" for warning in step.tracks.errors)
                summary.frames_tracked += any(o.mask.any() for o in step.tracks.objects)
            if not request:
                return
            outcome = handlers.query(request, camera=CAMERA, request_id=f"frame-{index}")
            if outcome.outputs is None:
                summary.errors.append(f"frame {index}: {outcome.answer.error}")
                write(f"{OUTPUT_NAMESPACE}/answer", "vitron_ros_msgs/msg/Answer", outcome.answer, item.timestamp_ns)
                return
            for name, (msgtype, msg) in outcome.outputs.by_topic().items():
                write(f"{OUTPUT_NAMESPACE}/{name}", msgtype, msg, item.timestamp_ns)
            summary.frames_answered += 1

        processed = index = 0
        pending: tuple[int, InputMessage] | None = None  # an image waits for the next one: its depth comes after it
        progress = tqdm(total=total, desc="replay", unit="frame", disable=not show_progress)
        for item in messages:
            if item.topic != topic:  # depth and camera_infos
                write(item.topic, item.msgtype, item.msg, item.timestamp_ns)
                if item.msgtype == CAMERA_INFO:
                    depth.add_info(item.msg, colour=item.topic == camera_info_topic(topic))
                else:
                    depth.add_depth(item.msg)
                continue
            if pending is not None:  # any next image: what was recorded before it (the depth) is in
                process(*pending)
                pending = None
            index, skip = index + 1, index % every
            if skip:
                continue
            if max_frames is not None and processed >= max_frames:
                break
            progress.update()
            processed += 1
            write(item.topic, item.msgtype, item.msg, item.timestamp_ns)
            pending = (index - 1, item)
        if pending is not None:
            process(*pending)
        progress.close()
    return summary


def replay_handlers(profile, device: str = "cpu", overlay: bool = True, progress=print,
                    depth_topic: str = "") -> VitronHandlers:
    """Handlers over one replay camera with the profile's models loaded, as the node has them once active; with
    `depth_topic` its masks and tracks get 3D from that aligned depth."""
    lifter = DepthLifter({CAMERA: CameraDepth(depth_topic)}, wait_s=0.0) if depth_topic else None
    handlers = VitronHandlers(TypestoreFactory(), {CAMERA: CameraFrames(CAMERA, ring_length=1)}, overlay=overlay,
                              lifter=lifter)
    handlers.load(profile, device, progress=progress)
    return handlers


def write_image_bag(path: Path, images: list[np.ndarray], topic: str = VIDEO_TOPIC, frame_id: str = "camera",
                    storage: str = "mcap", period_ns: int = 100_000_000, encoding: str = "rgb8") -> None:  # fmt: skip
    """A rosbag2 of (H, W, 3) RGB images on `topic` (tests, benches and examples use it to make input bags)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store, factory = typestore(), TypestoreFactory()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        connection = writer.add_connection(topic, "sensor_msgs/msg/Image", typestore=store)
        for i, rgb in enumerate(images):
            stamp = (i + 1) * period_ns
            array = rgb[..., ::-1] if encoding == "bgr8" else rgb
            msg = numpy_to_image(array, encoding, factory, header(factory, stamp, frame_id))
            writer.write(connection, stamp, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
