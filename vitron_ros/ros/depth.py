"""Aligned depth for the node, with no rclpy in sight: depth images and their camera_info in, matched by stamp to
the colour frame a mask was computed on, lifted to 3D by the core (core/lifting.py).

A depth frame is used for a colour frame only when their stamps differ by at most `tolerance_s`, the nearest one
winning; never by arrival order. Depth often arrives a few milliseconds after its colour frame, so a lookup may
wait up to `wait_s` for it. Thread-safe: subscription callbacks add while query and tracking threads match.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.errors import VitronInputError, short_error
from ..core.lifting import (
    DEPTH_SCALES,
    DepthImage,
    LiftingConfig,
    Lifted,
    No3D,
    Object3D,
    PinholeCamera,
    RigidTransform,
    lift_mask,
    transform_object,
)
from .image_conversions import ImageConversionError, image_to_numpy
from .interfaces import stamp_ns


@dataclass(frozen=True)
class DepthFrame:
    depth: DepthImage
    camera: PinholeCamera
    header: Any  # the depth image's header
    offset_s: float  # depth stamp minus colour stamp


@dataclass(frozen=True)
class DepthStats:
    topic: str
    received: int
    errors: int  # depth images or camera_infos that could not be used
    matched: int  # colour frames that found their depth
    unmatched: int  # colour frames that did not (nothing within tolerance, or no camera_info)
    last_problem: str
    has_info: bool
    last_matched: bool  # the latest lookup found its depth


STALLED_S = 1.0  # a depth topic silent this long is not waited for


def depth_from_image(msg) -> DepthImage:
    """sensor_msgs/Image 16UC1 (mm) or 32FC1 (m) -> DepthImage (a copy: the message's buffer is not kept)."""
    if msg.encoding not in DEPTH_SCALES:
        raise ImageConversionError(f"depth image encoding {msg.encoding!r}: expected 16UC1 (millimetres) or 32FC1 "
                                   "(metres), REP 118")
    array = image_to_numpy(msg, copy=True)
    try:
        return DepthImage.from_array(array, msg.encoding)
    except VitronInputError as error:
        raise ImageConversionError(str(error)) from None


def camera_from_info(msg) -> PinholeCamera:
    """sensor_msgs/CameraInfo -> intrinsics (K, size, distortion). An uncalibrated camera_info (K all zeros) fails."""
    return PinholeCamera.from_k(msg.k, msg.width, msg.height, msg.distortion_model, tuple(msg.d))


class CameraDepth:
    """One camera's aligned depth: the recent depth frames and the latest camera_info."""

    def __init__(self, topic: str, tolerance_s: float = 0.02, history: int = 30):
        if tolerance_s < 0:
            raise ValueError(f"tolerance_s must be >= 0, got {tolerance_s}")
        self.topic = topic
        self.tolerance_s = tolerance_s
        self._ring: deque[tuple[int, DepthImage, Any]] = deque(maxlen=history)
        self._camera: PinholeCamera | None = None
        self._fallback: PinholeCamera | None = None  # the colour camera's, used while the depth's own is missing
        self._arrived = threading.Condition()
        self._received = self._errors = self._matched = self._unmatched = 0
        self._problem = ""
        self._last_matched = False
        self._last_arrival = -float("inf")  # monotonic time of the newest depth frame

    def add_depth(self, msg) -> bool:
        try:
            depth = depth_from_image(msg)
        except ImageConversionError as error:
            self._note(f"depth on {self.topic}: {error}", error=True)
            return False
        with self._arrived:
            self._received += 1
            self._ring.append((stamp_ns(msg.header), depth, msg.header))
            self._last_arrival = time.monotonic()
            self._arrived.notify_all()
        return True

    def add_info(self, msg, colour: bool = False) -> bool:
        """The depth's camera_info, or with `colour` the colour camera's (aligned depth shares its intrinsics)."""
        try:
            camera = camera_from_info(msg)
        except VitronInputError as error:
            self._note(f"camera_info for {self.topic}: {error}", error=True)
            return False
        with self._arrived:
            if colour:
                self._fallback = camera
            else:
                self._camera = camera
        return True

    def match(self, header, wait_s: float = 0.0) -> DepthFrame | str:
        """The depth frame nearest `header`'s stamp within the tolerance (waiting up to `wait_s` for it to arrive),
        or the reason there is none."""
        target = stamp_ns(header)
        tolerance = int(self.tolerance_s * 1e9)
        with self._arrived:
            # Wait only while the match can still come: depth is flowing (a frame arrived lately) and nothing newer
            # than the window has arrived. A depth topic that stopped must not slow every frame by wait_s.
            flowing = time.monotonic() - self._last_arrival < max(STALLED_S, wait_s)
            if flowing:
                self._arrived.wait_for(lambda: self._nearest(target, tolerance) is not None
                                       or self._ring[-1][0] > target + tolerance, timeout=wait_s)
            found = self._nearest(target, tolerance) is not None
            camera = self._camera or self._fallback
            if found and camera is not None:
                stamp, depth, depth_header = self._nearest(target, tolerance)
                self._matched += 1
                self._last_matched = True
                return DepthFrame(depth, camera, depth_header, (stamp - target) / 1e9)
            self._unmatched += 1
            self._last_matched = False
            if camera is None:
                reason = f"no camera_info for the depth on {self.topic} yet"
            elif not self._ring:
                reason = f"no depth image received on {self.topic}"
            else:
                nearest = min(abs(s - target) for s, _, _ in self._ring) / 1e9
                reason = (f"no depth on {self.topic} within {self.tolerance_s * 1000:.0f} ms of the image "
                          f"(nearest {nearest * 1000:.0f} ms away)")
            self._problem = reason
            return reason

    def _nearest(self, target: int, tolerance: int):
        best = min(self._ring, key=lambda item: abs(item[0] - target), default=None)
        return best if best is not None and abs(best[0] - target) <= tolerance else None

    def _note(self, problem: str, error: bool = False) -> None:
        with self._arrived:
            self._problem = problem
            self._errors += int(error)

    def stats(self) -> DepthStats:
        with self._arrived:
            return DepthStats(self.topic, self._received, self._errors, self._matched, self._unmatched, self._problem,
                              (self._camera or self._fallback) is not None, self._last_matched)


def lift_all(masks, frame: DepthFrame | str, config: LiftingConfig = LiftingConfig()) -> list[Lifted]:
    """(mask, box_xyxy) pairs + their matched depth (or the reason there is none) -> one estimate per mask. A
    mask whose lifting fails gets that as its reason: the answer's 2D results are never lost to it."""
    if isinstance(frame, str):
        return [No3D(frame) for _ in masks]
    lifted = []
    for mask, box in masks:
        try:
            lifted.append(lift_mask(mask, frame.depth, frame.camera, config, box))
        except Exception as error:  # noqa: BLE001 - contained per mask
            lifted.append(No3D(f"lifting failed: {short_error(error)}"))
    return lifted


@dataclass(frozen=True)
class Lifting3D:
    """The 3D of one frame's masks: per mask an estimate or the reason there is none (optical frame), whether the
    frame's depth was found (3D topics publish only then), and the estimates in the target frame where asked."""

    lifted: list[Lifted]
    matched: bool
    problem: str = ""  # why this frame has no 3D (no depth topic, nothing within tolerance, no transform)
    target: tuple[Any, list[Lifted]] | None = None  # (header with the target frame and the image's stamp, estimates)


# (target frame, source frame, the image's header) -> the transform at the header's stamp, or why there is none
TransformLookup = Callable[[str, str, Any], "RigidTransform | str"]


class DepthLifter:
    """The node's 3D: each camera's aligned depth, the lifting settings, and a transform lookup for `target_frame`."""

    def __init__(self, depth: dict[str, CameraDepth], wait_s: float = 0.1, config: LiftingConfig = LiftingConfig(),
                 target_frame: str = "", transforms: TransformLookup | None = None, transforms_missing: str = ""):
        self.depth = depth
        self.wait_s = wait_s
        self.config = config
        self.target_frame = target_frame
        self.transforms = transforms  # None with a target_frame: `transforms_missing` says why (e.g. no tf2)
        self.transforms_missing = transforms_missing
        self._lock = threading.Lock()
        self.last_target_problem = ""

    def capture(self, camera: str, header) -> DepthFrame | str:
        """The depth for the image with `header` from `camera`, or why there is none. Take it when the image is
        taken: a query's models may run longer than the depth ring holds."""
        source = self.depth.get(camera)
        if source is None:
            return f"no depth topic for camera {camera!r} (parameter depth_topics)"
        return source.match(header, self.wait_s)

    def lift(self, camera: str, header, masks, factory, captured: DepthFrame | str | None = None) -> Lifting3D:
        """(mask, box_xyxy) pairs computed on the image with `header` from `camera` -> their 3D (with the depth
        `captured` for it earlier, or matched now)."""
        frame = self.capture(camera, header) if captured is None else captured
        lifted = lift_all(masks, frame, self.config)
        if isinstance(frame, str):
            return Lifting3D(lifted, False, frame)
        return Lifting3D(lifted, True, "", self._in_target(header, lifted, factory))

    def _in_target(self, header, lifted: list[Lifted], factory):
        if not self.target_frame:
            return None
        if self.transforms is None:
            problem = self.transforms_missing or "no transform source"
        else:
            found = self.transforms(self.target_frame, header.frame_id, header)
            if isinstance(found, RigidTransform):
                moved = [transform_object(item, found) if isinstance(item, Object3D) else item for item in lifted]
                target_header = factory.new("std_msgs/msg/Header", stamp=header.stamp, frame_id=self.target_frame)
                with self._lock:
                    self.last_target_problem = ""
                return target_header, moved
            problem = found
        with self._lock:
            self.last_target_problem = problem
        return None

    def status(self, camera: str) -> tuple[bool, str]:
        """(fine, text) for `camera`'s 3D in diagnostics: what its depth received and matched, or why there is none."""
        source = self.depth.get(camera)
        if source is None:
            return True, "no depth topic for this camera: no 3D"
        s = source.stats()
        text = f"{s.topic}: {s.received} received, {s.matched} frames matched, {s.unmatched} not"
        if s.received == 0:
            return False, f"no depth image received on {s.topic}: no 3D published"
        if not s.has_info:
            return False, f"no camera_info for {s.topic} (nor the camera's): no 3D published"
        if s.matched + s.unmatched and not s.last_matched:
            return False, f"{text}; last frame: {s.last_problem}"
        if self.target_frame:
            with self._lock:
                problem = self.last_target_problem
            text += f"; target_frame {self.target_frame!r}" + (f": {problem}" if problem else "")
        return True, text
