"""Tracking on the node's camera streams, with no rclpy in sight: frames in, TrackedObjectArray messages out.

`vitron_node` runs `CameraTracking.process` on every camera frame from a worker thread (~/tracks at camera rate),
serves AddObjects / RemoveObject and the Track action through it, and `vitron replay --track` drives the same
object. Every failure becomes a message field (success=false, warnings, error); nothing raises out of here.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import VitronInputError
from ..core.lifting import No3D
from ..core.masks import mask_to_box
from ..core.overlay import render_tracks
from ..core.tracking.state import (
    FrameTracks,
    GroundingRequest,
    ObjectFrameState,
    ObjectPrompt,
    ObjectStatus,
)
from .depth import DepthLifter, Lifting3D
from .frame_buffer import StampedFrame
from .image_conversions import numpy_to_image
from .interfaces import MessageFactory, stamp_ns
from .result_messages import mask_image_msg, pixel_box
from .spatial_messages import DETECTIONS_3D, MARKERS, Spatial, detections_3d_msg, markers_3d_msg, object_3d_msg

TRACKED_OBJECT = "vitron_ros_msgs/msg/TrackedObject"
TRACKED_OBJECT_ARRAY = "vitron_ros_msgs/msg/TrackedObjectArray"
STATE_CODES = {ObjectStatus.TRACKED: 0, ObjectStatus.OCCLUDED: 1, ObjectStatus.LOST: 2}


def tracked_object_msg(factory: MessageFactory, state: ObjectFrameState, header, cropped: bool = False,
                       lifted=None) -> Any:
    visible = state.status is ObjectStatus.TRACKED
    mask = (mask_image_msg(factory, state.mask, state.box_xyxy, header, cropped) if visible
            else factory.new("sensor_msgs/msg/Image", header=header))
    return factory.new(
        TRACKED_OBJECT,
        header=header,
        object_id=state.object_id,
        label=state.label,
        state=STATE_CODES[state.status],
        score=float(state.score),
        frames_unseen=int(state.frames_unseen),
        prompted=bool(state.prompted),
        box=pixel_box(factory, state.box_xyxy if state.box_xyxy is not None else (0, 0, 0, 0)),
        mask=mask,
        mask_cropped=cropped and visible,
        object_3d=object_3d_msg(factory, lifted),
    )


def tracks_msg(factory: MessageFactory, tracks: FrameTracks, header, cropped: bool = False,
               lifted: dict | None = None) -> Any:
    """`lifted`: object id -> its 3D estimate (or the reason there is none)."""
    lifted = lifted or {}
    return factory.new(
        TRACKED_OBJECT_ARRAY,
        header=header,
        frame_index=int(tracks.frame_index),
        objects=[tracked_object_msg(factory, s, header, cropped, lifted.get(s.object_id)) for s in tracks.objects],
        warnings=list(tracks.errors),
    )


@dataclass
class TrackStep:
    tracks: FrameTracks
    tracks_msg: Any  # vitron_ros_msgs/TrackedObjectArray -> ~/tracks
    overlay_msg: Any | None  # sensor_msgs/Image rgb8 -> ~/tracks_overlay
    track_s: float = 0.0  # the tracker's step
    build_s: float = 0.0  # building the messages (masks, overlay, 3D)
    # 3D, when the frame's aligned depth was found: vision_msgs/Detection3DArray -> ~/tracks_3d (ids = object ids),
    # visualization_msgs/MarkerArray -> ~/tracks_markers, and in target_frame -> ~/tracks_3d_target
    detections_3d_msg: Any | None = None
    markers_msg: Any | None = None
    detections_3d_target_msg: Any | None = None

    def messages(self) -> list[tuple[str, str, Any]]:
        """(relative topic, message type, message) of everything this step publishes."""
        items = [("tracks", TRACKED_OBJECT_ARRAY, self.tracks_msg), ("tracks_overlay", "sensor_msgs/msg/Image", self.overlay_msg),
                 ("tracks_3d", DETECTIONS_3D, self.detections_3d_msg), ("tracks_markers", MARKERS, self.markers_msg),
                 ("tracks_3d_target", DETECTIONS_3D, self.detections_3d_target_msg)]
        return [item for item in items if item[2] is not None]

    @property
    def payload_bytes(self) -> int:
        """Image bytes this step publishes: every mask plus the overlay."""
        masks = sum(len(o.mask.data) for o in self.tracks_msg.objects)
        return masks + (len(self.overlay_msg.data) if self.overlay_msg is not None else 0)


class CameraTracking:
    """One camera's live tracker: objects added and removed by services and goals, stepped on every frame.

    With `schedule_grounding`, the tracker defers grounding: each GroundingRequest a frame produces goes to that
    callable (the node runs it on the camera's query worker, off the frame path), which hands the result back
    through `resolve_grounding`; frames keep flowing meanwhile.
    """

    def __init__(self, camera: str, tracker, factory: MessageFactory, overlay: bool = True,
                 schedule_grounding: Callable[[CameraTracking, GroundingRequest], None] | None = None,
                 cropped_masks: bool = False, lifter: DepthLifter | None = None):
        self.camera = camera
        self.tracker = tracker  # a StreamTracker on the profile's SAM 2
        self.factory = factory
        self.overlay = overlay
        self.schedule_grounding = schedule_grounding
        self.cropped_masks = cropped_masks  # masks cropped to their box instead of full-frame
        self.lifter = lifter  # tracked objects get 3D from this camera's aligned depth (None: no depth)
        self.lock = threading.Lock()  # frames step while services add and remove objects
        self._listeners: list[TrackGoal] = []

    def process(self, frame: StampedFrame) -> TrackStep | None:
        """Track every object into `frame`; None when nothing is tracked (nothing to publish, no model work).

        Frames count even while nothing is tracked: they fix the stream's size, so AddObjects can check boxes
        against it at once. With no object tracked, a camera that changes resolution simply starts a new stream.
        """
        started = time.perf_counter()
        with self.lock:
            idle = not self.tracker.object_ids
            if idle and self.tracker.state.image_hw not in (None, frame.rgb.shape[:2]):
                self.tracker.reset()
            try:
                tracks = self.tracker.step(frame.rgb)
            except VitronInputError as error:
                # A frame of another size: this stream's objects cannot follow into it. Report it and go on.
                tracks = FrameTracks(frame_index=self.tracker.state.frames_seen, image_hw=frame.rgb.shape[:2],
                                     errors=[f"frame dropped: {error}"])
            listeners = list(self._listeners)
        for request in tracks.grounding_requests:
            self.schedule_grounding(self, request)
        if idle:
            return None
        tracked = time.perf_counter()
        for goal in listeners:
            goal.observe(tracks, frame.header)
        overlay = None
        if self.overlay and tracks.objects:
            overlay = numpy_to_image(render_tracks(frame.rgb, tracks), "rgb8", self.factory, frame.header)
        visible = [s for s in tracks.objects if s.status is ObjectStatus.TRACKED]
        spatial = None
        if self.lifter is not None:
            spatial = self.lifter.lift(self.camera, frame.header, [(s.mask, s.box_xyxy) for s in visible], self.factory)
        lifted = {s.object_id: No3D("not visible in this frame") for s in tracks.objects} if spatial else {}
        lifted.update(zip([s.object_id for s in visible], spatial.lifted, strict=True) if spatial else ())
        msg = tracks_msg(self.factory, tracks, frame.header, self.cropped_masks, lifted)
        step = TrackStep(tracks, msg, overlay, tracked - started)
        if spatial is not None and spatial.matched:
            self._add_3d(step, visible, spatial, frame.header)
        step.build_s = time.perf_counter() - tracked
        return step

    def _add_3d(self, step: TrackStep, visible: list[ObjectFrameState], spatial: Lifting3D, header) -> None:
        items = [Spatial(s.object_id, s.label, float(s.score), lifted)
                 for s, lifted in zip(visible, spatial.lifted, strict=True)]
        step.detections_3d_msg = detections_3d_msg(self.factory, items, header)
        step.markers_msg = markers_3d_msg(self.factory, items, header, "vitron_tracks")
        if spatial.target is not None:
            target_header, moved = spatial.target
            step.detections_3d_target_msg = detections_3d_msg(
                self.factory, [Spatial(i.id, i.label, i.score, m) for i, m in zip(items, moved, strict=True)],
                target_header)

    def add(self, prompt: ObjectPrompt, object_id: str | None = None) -> str:
        with self.lock:
            return self.tracker.add_object(prompt, object_id)

    def remove(self, object_id: str) -> None:
        with self.lock:
            self.tracker.remove_object(object_id)

    def resolve_grounding(self, object_id: str, found, error: str = "") -> None:
        """A deferred grounding's result (see StreamTracker.resolve_grounding); applied on the next frame."""
        with self.lock:
            self.tracker.resolve_grounding(object_id, found, error)

    def object_ids(self) -> list[str]:
        with self.lock:
            return self.tracker.object_ids

    def listen(self, goal: TrackGoal) -> None:
        with self.lock:
            self._listeners.append(goal)

    def stop_listening(self, goal: TrackGoal) -> None:
        with self.lock:
            if goal in self._listeners:
                self._listeners.remove(goal)

    # -- services -----------------------------------------------------------------------------------------------
    def add_objects(self, req) -> dict:
        """AddObjects.srv request -> response fields. All or nothing: one bad prompt adds none of them."""
        try:
            prompts = prompts_from_add_objects(req)
            with self.lock:
                known = set(self.tracker.object_ids)
                clashes = sorted(known & {object_id for object_id, _ in prompts if object_id})
                if clashes:
                    raise VitronInputError(f"object id(s) {clashes} are already tracked; remove them first")
                for _, prompt in prompts:
                    self.tracker.check_prompt(prompt)
                for object_id, prompt in prompts:
                    self.tracker.add_object(prompt, object_id or None)
            return self._listing(True, f"added {len(prompts)} object(s); tracking starts on the next frame")
        except VitronInputError as error:
            return self._listing(False, str(error))

    def remove_object(self, object_id: str) -> dict:
        try:
            self.remove(object_id)
            return self._listing(True, f"removed {object_id!r}")
        except VitronInputError as error:
            return self._listing(False, str(error))

    def _listing(self, success: bool, message: str) -> dict:
        ids = self.object_ids()
        return {"success": success, "message": message, "object_ids": ids, "object_indices": list(range(len(ids)))}


def prompts_from_add_objects(req) -> list[tuple[str, ObjectPrompt]]:
    """AddObjects fields -> (id or '', prompt) pairs: one per box, per distinct point id and per request."""
    if len(req.bbox_coords) != len(req.bbox_object_ids):
        raise VitronInputError(f"{len(req.bbox_coords)} bbox_coords but {len(req.bbox_object_ids)} bbox_object_ids")
    if len(req.point_coords) != len(req.point_object_ids):
        raise VitronInputError(f"{len(req.point_coords)} point_coords but {len(req.point_object_ids)} point_object_ids")
    if len(req.point_coords) != len(req.point_labels):
        raise VitronInputError(f"{len(req.point_coords)} point_coords but {len(req.point_labels)} point_labels")
    if req.request_object_ids and len(req.request_object_ids) != len(req.requests):
        raise VitronInputError(f"{len(req.requests)} requests but {len(req.request_object_ids)} request_object_ids")
    prompts: list[tuple[str, ObjectPrompt]] = []
    for i, (bbox, object_id) in enumerate(zip(req.bbox_coords, req.bbox_object_ids, strict=True)):
        cx, cy, w, h = float(bbox.center.position.x), float(bbox.center.position.y), float(bbox.size_x), float(bbox.size_y)
        if not all(math.isfinite(v) for v in (cx, cy, w, h)) or w <= 0 or h <= 0:
            raise VitronInputError(f"bbox_coords[{i}] needs a finite centre and a positive size, got {(cx, cy, w, h)}")
        prompts.append((object_id, ObjectPrompt(box_xyxy=(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))))
    grouped: dict[str, list[tuple[float, float, int]]] = {}
    for point, object_id, label in zip(req.point_coords, req.point_object_ids, req.point_labels, strict=True):
        grouped.setdefault(object_id, []).append((float(point.x), float(point.y), int(label)))
    for object_id, points in grouped.items():
        xy = np.asarray([(x, y) for x, y, _ in points], np.float32)
        prompts.append((object_id, ObjectPrompt(points_xy=xy, point_labels=np.asarray([lab for *_, lab in points]))))
    request_ids = list(req.request_object_ids) or [""] * len(req.requests)
    for request, object_id in zip(req.requests, request_ids, strict=True):
        prompts.append((object_id, ObjectPrompt(request=request)))
    if not prompts:
        raise VitronInputError("AddObjects needs at least one box, point or request")
    named = [object_id for object_id, _ in prompts if object_id]
    duplicates = sorted({i for i in named if named.count(i) > 1})
    if duplicates:
        raise VitronInputError(f"object id(s) {duplicates} appear on more than one prompt")
    return prompts


def prompt_from_track_goal(goal) -> ObjectPrompt:
    """Track.action goal -> the object's prompt: a request, points or a box (x2 > x1)."""
    has_box = float(goal.box.x2) > float(goal.box.x1)
    given = [name for name, present in (("request", bool(goal.request.strip())), ("points", len(goal.points) > 0),
                                        ("box", has_box)) if present]
    if not given:
        raise VitronInputError("Track goal is empty: give a request, points or a box")
    if "request" in given and len(given) > 1:
        raise VitronInputError(f"Track goal gives {' and '.join(given)}: give a request or geometry, not both")
    if "request" in given:
        return ObjectPrompt(request=goal.request)
    points = labels = None
    if goal.points:
        points = np.asarray([[float(p.x), float(p.y)] for p in goal.points], np.float32)
        labels = np.asarray([int(p.label) for p in goal.points])
    box = (float(goal.box.x1), float(goal.box.y1), float(goal.box.x2), float(goal.box.y2)) if has_box else None
    return ObjectPrompt(points_xy=points, point_labels=labels, box_xyxy=box)


@dataclass
class TrackGoal:
    """A Track action goal's running summary, fed by every frame the camera's tracker processes."""

    object_id: str
    duration_ns: int  # 0: until cancelled
    frames: int = 0
    counts: dict[ObjectStatus, int] = field(default_factory=lambda: dict.fromkeys(ObjectStatus, 0))
    reacquisitions: int = 0
    scores: list[float] = field(default_factory=list)
    last: ObjectFrameState | None = None
    last_header: Any = None
    last_frame_index: int = -1
    first_stamp_ns: int | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    updated: threading.Condition = field(default_factory=threading.Condition)
    error: str = ""

    def observe(self, tracks: FrameTracks, header) -> None:
        if self.finished.is_set():
            return  # frames after the goal's end, before its thread stopped listening, are not the goal's
        frame_stamp_ns = stamp_ns(header)
        try:
            state = tracks.by_id(self.object_id)
        except KeyError:
            if tracks.objects or not tracks.errors:
                self.error = f"object {self.object_id!r} was removed while the goal ran"
                self.finished.set()
            return  # a dropped frame: no state for anyone
        with self.updated:
            if self.first_stamp_ns is None:
                self.first_stamp_ns = frame_stamp_ns
            was_lost = self.last is not None and self.last.status is ObjectStatus.LOST
            if was_lost and state.status is ObjectStatus.TRACKED:
                self.reacquisitions += 1
            self.frames += 1
            self.counts[state.status] += 1
            if state.status is ObjectStatus.TRACKED:
                self.scores.append(state.score)
            self.last, self.last_header, self.last_frame_index = state, header, tracks.frame_index
            self.updated.notify_all()
        if self.duration_ns and frame_stamp_ns - self.first_stamp_ns >= self.duration_ns:
            self.finished.set()

    def wait_for_frame(self, after_index: int, timeout_s: float) -> tuple[ObjectFrameState, Any, int] | None:
        """(state, header, frame index) once a frame newer than `after_index` arrived, else None after `timeout_s`."""
        with self.updated:
            self.updated.wait_for(lambda: self.last_frame_index > after_index, timeout=timeout_s)
            if self.last_frame_index > after_index:
                return self.last, self.last_header, self.last_frame_index
            return None

    def result_fields(self) -> dict:
        return {
            "object_id": self.object_id,
            "frames": self.frames,
            "frames_tracked": self.counts[ObjectStatus.TRACKED],
            "frames_occluded": self.counts[ObjectStatus.OCCLUDED],
            "frames_lost": self.counts[ObjectStatus.LOST],
            "reacquisitions": self.reacquisitions,
            "mean_score": float(np.mean(self.scores)) if self.scores else 0.0,
            "error": self.error,
        }


def track_result_msg(factory: MessageFactory, goal: TrackGoal) -> Any:
    fields = goal.result_fields()
    if goal.last is not None:
        fields["last"] = tracked_object_msg(factory, goal.last, goal.last_header)
    return factory.new("vitron_ros_msgs/action/Track_Result", **fields)


def run_track_goal(tracking: CameraTracking, request, factory: MessageFactory, is_cancelled, publish_feedback,
                   poll_s: float = 0.2) -> tuple[Any, str]:
    """Track.action's execute callback without rclpy: add the object, feed back every frame, remove it at the end.

    Returns (Track_Result, outcome) with outcome 'succeeded', 'canceled' or 'aborted'. `is_cancelled()` is polled
    at least every `poll_s`; `publish_feedback(msg)` gets a Track_Feedback per frame the tracker processed.
    """
    try:
        object_id = tracking.add(prompt_from_track_goal(request), request.object_id or None)
    except VitronInputError as error:
        return factory.new("vitron_ros_msgs/action/Track_Result", error=str(error)), "aborted"
    goal = TrackGoal(object_id, round(max(0.0, float(request.duration_s)) * 1e9))
    tracking.listen(goal)
    outcome = "succeeded"
    try:
        index = -1
        while not goal.finished.is_set():
            if is_cancelled():
                outcome = "canceled"
                break
            newest = goal.wait_for_frame(index, poll_s)
            if newest is not None:
                state, header, index = newest
                publish_feedback(factory.new("vitron_ros_msgs/action/Track_Feedback", frame_index=index,
                                             object=tracked_object_msg(factory, state, header, tracking.cropped_masks)))
    finally:
        tracking.stop_listening(goal)
        try:
            tracking.remove(object_id)
        except VitronInputError:
            pass  # a RemoveObject call took it already; the goal says so in its error
    if goal.error:
        outcome = "aborted"
    return track_result_msg(factory, goal), outcome


def clip_tracks_msgs(factory: MessageFactory, tracks: Sequence, headers: Sequence) -> list:
    """A clip query's MaskTracks -> one TrackedObjectArray per clip frame (the header of that frame)."""
    arrays = []
    unseen = [0] * len(tracks)  # consecutive clip frames without each object
    for t, frame_header in enumerate(headers):
        objects = []
        for index, track in enumerate(tracks):
            mask = track.masks[t]
            visible = bool(mask.any())
            unseen[index] = 0 if visible else unseen[index] + 1
            state = ObjectFrameState(
                object_id=f"clip{index}", label=track.label,
                status=ObjectStatus.TRACKED if visible else ObjectStatus.OCCLUDED, score=float(track.scores[t]),
                mask=mask, box_xyxy=mask_to_box(mask) if visible else None, frames_unseen=unseen[index],
                prompted=t == 0,
            )  # fmt: skip
            objects.append(tracked_object_msg(factory, state, frame_header))
        arrays.append(factory.new(TRACKED_OBJECT_ARRAY, header=frame_header, frame_index=t, objects=objects))
    return arrays
