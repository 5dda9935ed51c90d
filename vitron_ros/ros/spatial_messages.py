"""3D estimates (core/lifting.py) -> vitron_ros_msgs/Object3D, vision_msgs/Detection3DArray and rviz markers.

Pure functions over a `MessageFactory`, like result_messages.py. Every message carries the header of the image the
masks were computed on; positions are in that header's frame (the camera's optical frame) unless a transform moved
them (then the header's frame_id is the target frame and its stamp still the image's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.lifting import Lifted, Object3D
from ..core.overlay import colour_for
from .interfaces import MessageFactory

DETECTIONS_3D = "vision_msgs/msg/Detection3DArray"
MARKERS = "visualization_msgs/msg/MarkerArray"
UNKNOWN_ROTATION_VARIANCE = 1e9  # PoseWithCovariance rotation block: orientation is not estimated


@dataclass(frozen=True)
class Spatial:
    """One mask or track to publish in 3D: its id (mask index or object id), class label, score and estimate."""

    id: str
    label: str
    score: float
    lifted: Lifted


def _point(factory: MessageFactory, xyz) -> Any:
    x, y, z = (float(v) for v in xyz)
    return factory.new("geometry_msgs/msg/Point", x=x, y=y, z=z)


def _pose(factory: MessageFactory, xyz, quaternion=(0.0, 0.0, 0.0, 1.0)) -> Any:
    qx, qy, qz, qw = (float(v) for v in quaternion)
    return factory.new("geometry_msgs/msg/Pose", position=_point(factory, xyz),
                       orientation=factory.new("geometry_msgs/msg/Quaternion", x=qx, y=qy, z=qz, w=qw))


def _box(factory: MessageFactory, centre, size, quaternion=(0.0, 0.0, 0.0, 1.0)) -> Any:
    x, y, z = (float(v) for v in size)
    return factory.new("vision_msgs/msg/BoundingBox3D", center=_pose(factory, centre, quaternion),
                       size=factory.new("geometry_msgs/msg/Vector3", x=x, y=y, z=z))


def object_3d_msg(factory: MessageFactory, lifted: Lifted | None) -> Any:
    """vitron_ros_msgs/Object3D: the estimate, or valid=false with the reason."""
    if lifted is None:
        return factory.new("vitron_ros_msgs/msg/Object3D", valid=False, reason="no depth_topics: 3D is off")
    if not isinstance(lifted, Object3D):
        return factory.new("vitron_ros_msgs/msg/Object3D", valid=False, reason=lifted.reason,
                           valid_pixels=int(lifted.valid_pixels))
    return factory.new(
        "vitron_ros_msgs/msg/Object3D",
        valid=True,
        centroid=_point(factory, lifted.centroid),
        box=_box(factory, lifted.box_center, lifted.box_size),
        oriented_box=_box(factory, lifted.oriented_center, lifted.oriented_size, lifted.oriented_quaternion),
        covariance=np.asarray(lifted.covariance, np.float64).ravel(),
        occluded_share=float(lifted.occluded_share),
        inliers=int(lifted.inliers),
        valid_pixels=int(lifted.valid_pixels),
    )


def pose_covariance(lifted: Object3D) -> np.ndarray:
    """The 6x6 row-major PoseWithCovariance covariance: the points' spread for position, orientation unknown."""
    covariance = np.zeros((6, 6))
    covariance[:3, :3] = lifted.covariance
    covariance[3:, 3:] = np.eye(3) * UNKNOWN_ROTATION_VARIANCE
    return covariance.ravel()


def detections_3d_msg(factory: MessageFactory, items: Sequence[Spatial], header) -> Any:
    """vision_msgs/Detection3DArray: one detection per estimate that has 3D. results[0]: class = label, pose = the
    centroid with the spread as covariance; bbox = the axis-aligned box; id = the mask index or track id."""
    detections = []
    for item in items:
        lifted = item.lifted
        if not isinstance(lifted, Object3D):
            continue
        pose = factory.new("geometry_msgs/msg/PoseWithCovariance", pose=_pose(factory, lifted.centroid),
                           covariance=pose_covariance(lifted))
        hypothesis = factory.new("vision_msgs/msg/ObjectHypothesisWithPose", pose=pose,
                                 hypothesis=factory.new("vision_msgs/msg/ObjectHypothesis", class_id=item.label,
                                                        score=float(item.score)))
        detections.append(factory.new("vision_msgs/msg/Detection3D", header=header, results=[hypothesis],
                                      bbox=_box(factory, lifted.box_center, lifted.box_size), id=item.id))
    return factory.new(DETECTIONS_3D, header=header, detections=detections)


def markers_3d_msg(factory: MessageFactory, items: Sequence[Spatial], header, namespace: str) -> Any:
    """visualization_msgs/MarkerArray: a DELETEALL, then per estimate with 3D a translucent box at its true position
    and size and a label above it (above = -y in an optical frame)."""
    markers = [factory.new("visualization_msgs/msg/Marker", header=header, ns=namespace, id=0, action=3)]
    for index, item in enumerate(items):
        lifted = item.lifted
        if not isinstance(lifted, Object3D):
            continue
        r, g, b = (c / 255.0 for c in colour_for(index))
        size = np.maximum(lifted.box_size, 0.005)  # a flat surface still shows
        markers.append(factory.new(
            "visualization_msgs/msg/Marker", header=header, ns=namespace, id=2 * index + 1,
            type=1, action=0,  # CUBE, ADD
            pose=_pose(factory, lifted.box_center),
            scale=factory.new("geometry_msgs/msg/Vector3", x=float(size[0]), y=float(size[1]), z=float(size[2])),
            color=factory.new("std_msgs/msg/ColorRGBA", r=r, g=g, b=b, a=0.5),
        ))  # fmt: skip
        above = lifted.box_center - np.array([0.0, size[1] / 2 + 0.03, 0.0])
        markers.append(factory.new(
            "visualization_msgs/msg/Marker", header=header, ns=namespace, id=2 * index + 2,
            type=9, action=0,  # TEXT_VIEW_FACING, ADD
            pose=_pose(factory, above),
            scale=factory.new("geometry_msgs/msg/Vector3", x=0.0, y=0.0, z=0.04),
            color=factory.new("std_msgs/msg/ColorRGBA", r=r, g=g, b=b, a=1.0),
            text=f"{item.label} {item.score:.2f} ({lifted.distance:.2f} m)",
        ))  # fmt: skip
    return factory.new(MARKERS, markers=markers)
