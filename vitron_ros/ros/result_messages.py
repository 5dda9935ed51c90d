"""VitronResult -> the messages the node publishes. Every message carries the header of the source image.

Pure functions over a `MessageFactory`: the node passes rclpy's classes, tests and `vitron replay` rosbags'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.lifting import Lifted
from ..core.overlay import render_overlay
from ..core.results import GroundedMask, SyntheticImage, VitronResult
from ..core.specialists import SPECIALISTS
from .depth import Lifting3D
from .image_conversions import numpy_to_image
from .interfaces import MessageFactory
from .spatial_messages import DETECTIONS_3D, Spatial, detections_3d_msg, markers_3d_msg, object_3d_msg

ANSWER = "vitron_ros_msgs/msg/Answer"
MASK_ARRAY = "vitron_ros_msgs/msg/GroundedMaskArray"
DETECTIONS = "vision_msgs/msg/Detection2DArray"
IMAGE = "sensor_msgs/msg/Image"
MARKERS = "visualization_msgs/msg/MarkerArray"
SYNTHETIC_IMAGE = "vitron_ros_msgs/msg/SyntheticImage"


@dataclass
class PublishedOutputs:
    """What one answered frame publishes, topic by topic (see the node's README table)."""

    answer: Any  # vitron_ros_msgs/Answer -> ~/answer
    masks: Any  # vitron_ros_msgs/GroundedMaskArray -> ~/masks
    detections: Any  # vision_msgs/Detection2DArray -> ~/detections
    overlay: Any | None  # sensor_msgs/Image rgb8 -> ~/overlay (None when overlays are off)
    # 3D, only when the frame's aligned depth was found: vision_msgs/Detection3DArray -> ~/detections_3d and
    # visualization_msgs/MarkerArray -> ~/markers (the camera's optical frame), and in target_frame where set and
    # its transform at the image's stamp is known -> ~/detections_3d_target
    detections_3d: Any | None = None
    markers: Any | None = None
    detections_3d_target: Any | None = None
    # what other output kinds publish, in invocation order: (relative topic, message type, message), e.g.
    # ("edited", SyntheticImage, ...) for each image the editor made
    extra: list[tuple[str, str, Any]] = field(default_factory=list)

    def by_topic(self) -> dict[str, tuple[str, Any]]:
        """Relative topic name -> (message type, message) of the answer's fixed topics, overlay left out when off."""
        topics = {
            "answer": (ANSWER, self.answer),
            "masks": (MASK_ARRAY, self.masks),
            "detections": (DETECTIONS, self.detections),
        }
        optional = {"overlay": (IMAGE, self.overlay), "detections_3d": (DETECTIONS_3D, self.detections_3d),
                    "markers": (MARKERS, self.markers), "detections_3d_target": (DETECTIONS_3D, self.detections_3d_target)}
        topics.update({topic: item for topic, item in optional.items() if item[1] is not None})
        return topics

    def messages(self) -> list[tuple[str, str, Any]]:
        """Every (relative topic, message type, message) to publish: the fixed topics, then the other kinds'."""
        return [(topic, kind, msg) for topic, (kind, msg) in self.by_topic().items()] + list(self.extra)

    def synthetic_images(self) -> list[Any]:
        return [msg for _, kind, msg in self.extra if kind == SYNTHETIC_IMAGE]


def pixel_box(factory: MessageFactory, box_xyxy) -> Any:
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return factory.new("vitron_ros_msgs/msg/PixelBox", x1=x1, y1=y1, x2=x2, y2=y2)


def mask_image_msg(factory: MessageFactory, mask: np.ndarray, box_xyxy, header, cropped: bool = False) -> Any:
    """sensor_msgs/Image mono8, 255 inside: the whole frame, or with `cropped` only the mask's tight box
    (its top-left pixel at (box.x1, box.y1)): a 2 MB full-frame mask at 1080p is often a few kB cropped."""
    if cropped:
        x1, y1, x2, y2 = (int(round(v)) for v in box_xyxy)
        mask = mask[y1:y2, x1:x2]
    return numpy_to_image(mask.astype(np.uint8) * 255, "mono8", factory, header)


def grounded_mask_msg(factory: MessageFactory, mask: GroundedMask, index: int, header, cropped: bool = False,
                      lifted: Lifted | None = None) -> Any:
    """mono8 mask (255 inside; full-frame, or cropped to the box) with label, score, source, tight box and 3D."""
    image = mask_image_msg(factory, mask.mask, mask.box_xyxy, header, cropped)
    return factory.new(
        "vitron_ros_msgs/msg/GroundedMask",
        header=header,
        id=index,
        label=mask.label,
        phrase=mask.phrase or "",
        score=float(mask.score),
        source=mask.source,
        invocation_index=-1 if mask.invocation_index is None else int(mask.invocation_index),
        box=pixel_box(factory, mask.box_xyxy),
        mask=image,
        mask_cropped=cropped,
        object_3d=object_3d_msg(factory, lifted),
    )


def mask_array_msg(factory: MessageFactory, masks: Sequence[GroundedMask], header, cropped: bool = False,
                   lifted: Sequence[Lifted] | None = None) -> Any:
    lifted = lifted if lifted is not None else [None] * len(masks)
    items = [grounded_mask_msg(factory, m, i, header, cropped, l3d)
             for i, (m, l3d) in enumerate(zip(masks, lifted, strict=True))]
    return factory.new(MASK_ARRAY, header=header, masks=items)


def answer_msg(
    factory: MessageFactory,
    result: VitronResult,
    header,
    request: str,
    request_id: str,
    mask_msgs: Sequence[Any],
    warnings: Sequence[str] = (),
) -> Any:
    """`mask_msgs`: the GroundedMask messages of `result.masks`, built once and shared with ~/masks; `warnings`:
    problems beyond the result's own (e.g. why the masks have no 3D)."""
    invocations = [
        factory.new(
            "vitron_ros_msgs/msg/Invocation",
            module=inv.module,
            task=inv.task,
            instruction=inv.instruction,
            phrase=inv.phrase or "",
            has_box=inv.box_xyxy is not None,
            box=pixel_box(factory, inv.box_xyxy or (0, 0, 0, 0)),
            seg_index=-1 if inv.seg_index is None else int(inv.seg_index),
        )
        for inv in result.invocations
    ]
    return factory.new(
        ANSWER,
        header=header,
        request_id=request_id,
        request=request,
        text=result.answer,
        raw_reply=result.raw_reply,
        masks=list(mask_msgs),
        invocations=invocations,
        warnings=[*result.errors, *warnings],
        latency_ms=float(result.timings.get("total", 0.0) * 1000.0),
    )


def error_answer_msg(factory: MessageFactory, header, request: str, request_id: str, error: str) -> Any:
    """An Answer that says why there is no answer (bad input, model not loaded, busy camera, cancelled)."""
    return factory.new(ANSWER, header=header, request_id=request_id, request=request, error=error)


def detections_msg(factory: MessageFactory, masks: Sequence[GroundedMask], header) -> Any:
    """vision_msgs/Detection2DArray: one detection per mask, class_id = label, bbox = the mask's box."""
    detections = []
    for i, mask in enumerate(masks):
        x1, y1, x2, y2 = (float(v) for v in mask.box_xyxy)
        hypothesis = factory.new("vision_msgs/msg/ObjectHypothesis", class_id=mask.label, score=float(mask.score))
        center = factory.new(
            "vision_msgs/msg/Pose2D",
            position=factory.new("vision_msgs/msg/Point2D", x=(x1 + x2) / 2.0, y=(y1 + y2) / 2.0),
            theta=0.0,
        )
        detections.append(
            factory.new(
                "vision_msgs/msg/Detection2D",
                header=header,
                results=[factory.new("vision_msgs/msg/ObjectHypothesisWithPose", hypothesis=hypothesis)],
                bbox=factory.new("vision_msgs/msg/BoundingBox2D", center=center, size_x=x2 - x1, size_y=y2 - y1),
                id=str(i),
            )
        )
    return factory.new(DETECTIONS, header=header, detections=detections)


def overlay_msg(factory: MessageFactory, rgb: np.ndarray, masks: Sequence[GroundedMask], header) -> Any:
    overlay = render_overlay(rgb, [m.mask for m in masks], [m.label for m in masks])
    return numpy_to_image(overlay, "rgb8", factory, header)


def synthetic_image_msg(factory: MessageFactory, image: SyntheticImage, header, request_id: str, frame: int = 0,
                        frame_count: int = 1, fps: float = 0.0) -> Any:
    """vitron_ros_msgs/SyntheticImage: the image (rgb8) and the region it changed (mono8), synthetic = true; a clip's
    frames carry their index, the clip's length and its rate."""
    return factory.new(
        SYNTHETIC_IMAGE,
        header=header,
        synthetic=True,
        kind=image.kind,
        specialist=image.specialist,
        task=image.task,
        label=image.label,
        request_id=request_id,
        invocation_index=-1 if image.invocation_index is None else int(image.invocation_index),
        image=numpy_to_image(image.image, "rgb8", factory, header),
        region=numpy_to_image(image.region.astype(np.uint8) * 255, "mono8", factory, header),
        frame=int(frame),
        frame_count=int(frame_count),
        fps=float(fps),
    )


def _image_messages(factory: MessageFactory, result: VitronResult, header, request_id: str) -> list:
    return [(image.kind, SYNTHETIC_IMAGE, synthetic_image_msg(factory, image, header, request_id)) for image in result.images]


def _video_messages(factory: MessageFactory, result: VitronResult, header, request_id: str) -> list:
    """Each generated clip frame by frame, in order, on its entry's topic; every pixel is synthetic."""
    items = []
    for video in result.videos:
        count = len(video.frames)
        full = np.ones(video.frames.shape[1:3], bool)
        for index, rgb in enumerate(video.frames):
            still = SyntheticImage(video.kind, rgb, full, video.label, video.specialist, video.task, video.invocation_index)
            items.append((video.kind, SYNTHETIC_IMAGE,
                          synthetic_image_msg(factory, still, header, request_id, index, count, video.fps)))
    return items


# Output kinds beyond the answer's masks (published on the fixed topics above) and live tracks (the tracking loop):
# kind -> (the topics a registry entry of that kind publishes on: {relative topic: type}, its messages for a result)
OUTPUT_MESSAGES = {
    "images": (lambda entry: {entry.topic: SYNTHETIC_IMAGE}, _image_messages),
    "videos": (lambda entry: {entry.topic: SYNTHETIC_IMAGE}, _video_messages),
}


def output_topics(names=None) -> dict[str, str]:
    """{relative topic: message type} that the registry's specialists (or just `names`) publish beyond the answer."""
    topics: dict[str, str] = {}
    for name, entry in SPECIALISTS.items():
        if (names is None or name in names) and entry.output in OUTPUT_MESSAGES:
            topics.update(OUTPUT_MESSAGES[entry.output][0](entry))
    return topics


def published_outputs(
    factory: MessageFactory,
    result: VitronResult,
    rgb: np.ndarray,
    header,
    request: str,
    request_id: str,
    overlay: bool = True,
    cropped_masks: bool = False,
    spatial: Lifting3D | None = None,
) -> PublishedOutputs:
    """Every message one answer publishes; the GroundedMask messages are built once and shared. `spatial`: the
    masks' 3D (None: the node has no depth at all); 3D topics publish only when the frame's depth was found."""
    masks = mask_array_msg(factory, result.masks, header, cropped_masks, spatial.lifted if spatial else None)
    warnings = [f"no 3D: {spatial.problem}"] if spatial is not None and spatial.problem else []
    outputs = PublishedOutputs(
        answer=answer_msg(factory, result, header, request, request_id, masks.masks, warnings),
        masks=masks,
        detections=detections_msg(factory, result.masks, header),
        overlay=overlay_msg(factory, rgb, result.masks, header) if overlay else None,
        extra=[item for _, build in OUTPUT_MESSAGES.values() for item in build(factory, result, header, request_id)],
    )
    if spatial is not None and spatial.matched:
        items = [Spatial(str(i), m.label, m.score, lifted)
                 for i, (m, lifted) in enumerate(zip(result.masks, spatial.lifted, strict=True))]
        outputs.detections_3d = detections_3d_msg(factory, items, header)
        outputs.markers = markers_3d_msg(factory, items, header, "vitron")
        if spatial.target is not None:
            target_header, moved = spatial.target
            outputs.detections_3d_target = detections_3d_msg(
                factory, [Spatial(i.id, i.label, i.score, m) for i, m in zip(items, moved, strict=True)], target_header)
    return outputs
