"""What the node does with each request, with no rclpy in sight: request fields in, messages out.

`vitron_node` (services, action, topic query) and `vitron replay` both call these, so what the tests check here is
what runs on the robot. Every failure becomes an error field in the reply; nothing raises out of a handler.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import (
    CheckpointLoadError,
    CheckpointNotFoundError,
    QueryCancelled,
    VitronInputError,
)
from ..core.results import GroundedMask
from ..core.sketch import Sketch
from ..core.specialist_pool import SpecialistUnavailable
from .depth import DepthLifter, Lifting3D
from .frame_buffer import CameraFrames, StampedFrame
from .image_conversions import image_to_rgb
from .interfaces import MessageFactory
from .result_messages import (
    PublishedOutputs,
    error_answer_msg,
    mask_array_msg,
    published_outputs,
)
from .tracking import CameraTracking, clip_tracks_msgs

# Errors that are the caller's or the setup's, reported in the reply; anything else is a bug and is reported too,
# with its type, so one bad request never takes the node down.
EXPECTED_ERRORS = (VitronInputError, CheckpointNotFoundError, CheckpointLoadError)


@dataclass
class QueryOutcome:
    answer: Any  # vitron_ros_msgs/Answer: the service / action reply (answer.error set on failure)
    outputs: PublishedOutputs | None  # what to publish; None when there is no answer
    frame: StampedFrame | None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per pipeline stage, for diagnostics


@dataclass
class VideoQueryOutcome:
    answer: Any  # vitron_ros_msgs/Answer about the clip's first frame (answer.error set on failure)
    clip_tracks: list  # vitron_ros_msgs/TrackedObjectArray per clip frame
    clip_frames: int
    outputs: PublishedOutputs | None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class SegmentOutcome:
    masks: Any  # vitron_ros_msgs/GroundedMaskArray
    error: str
    frame: StampedFrame | None


def describe_error(error: Exception) -> str:
    if isinstance(error, EXPECTED_ERRORS):
        return str(error)
    return f"{type(error).__name__}: {error}"


class VitronHandlers:
    """Owns the pipeline (loaded on activate, freed on deactivate) and the cameras' frames."""

    def __init__(self, factory: MessageFactory, cameras: dict[str, CameraFrames], overlay: bool = True,
                 video_frames: int = 8, run_in_background: Callable[[str, Callable[[], None]], None] | None = None,
                 cropped_masks: bool = False, lifter: DepthLifter | None = None):
        if not cameras:
            raise ValueError("at least one camera is needed")
        self.factory = factory
        self.cameras = cameras
        self.overlay = overlay
        self.video_frames = video_frames  # frames a VideoQuery's encoder samples when the goal does not say
        self.cropped_masks = cropped_masks  # published masks cover their box only (mask_format: cropped)
        self.lifter = lifter  # the cameras' aligned depth: masks and tracks get 3D (None: no depth anywhere)
        self.pipeline = None
        self.loading = ""  # the last progress line while models load on activate (exports, engine builds)
        self.tracking: dict[str, CameraTracking] = {}  # per camera, when the profile has a tracker
        # guards swapping the pipeline (activate / deactivate); the pipeline's own locks make queries from different
        # cameras take turns on the LLM and SAM, while a long generation or edit holds only its specialist's lock
        self.model_lock = threading.Lock()
        # (camera, job) -> None: runs a tracker's groundings off its frame path (the node: the camera's query
        # worker; it raises CameraBusyError when that is full). None: ground inline, as replays of files do.
        self.run_in_background = run_in_background

    # -- model lifetime -----------------------------------------------------------------------------------------
    def load(self, profile, device: str = "cpu", progress=print) -> None:
        from ..core.pipeline import VitronPipeline

        def report(message: str) -> None:
            self.loading = message  # diagnostics show it while activate runs: an engine build is minutes, not silence
            progress(message)

        try:
            self.attach(VitronPipeline.from_profile(profile, device=device, progress=report))
        finally:
            self.loading = ""

    def attach(self, pipeline) -> None:
        """Serve with a loaded pipeline: queries through it, and a live tracker per camera when it has SAM 2."""
        try:
            tracker = pipeline.specialists.get("tracker")
        except SpecialistUnavailable:  # recorded in the pool's failures, shown in diagnostics; queries still serve
            tracker = None
        if tracker is not None:
            pipeline.specialists.pin("tracker")  # the cameras' live streams hold its model
        deferred = self.run_in_background is not None
        with self.model_lock:
            self.pipeline = pipeline
            self.tracking = {} if tracker is None else {
                name: CameraTracking(
                    name,
                    tracker.stream(None if deferred else self._locked_grounder, defer_grounding=deferred),
                    self.factory, self.overlay, self._schedule_grounding if deferred else None, self.cropped_masks,
                    self.lifter,
                )
                for name in self.cameras
            }  # fmt: skip

    def _locked_grounder(self, image, request):
        """Grounding a language-started object runs the LLM, which queries use too: they take turns (its lock)."""
        return self._loaded().ground_request(image, request)

    def _schedule_grounding(self, tracking: CameraTracking, request) -> None:
        """Run a tracker's grounding on the camera's background runner; the result goes back down to the tracker."""

        def ground() -> None:
            try:
                found, error = self._locked_grounder(request.image, request.request), ""
            except Exception as exc:  # noqa: BLE001 - reported in the object's next frame
                found, error = None, describe_error(exc)
            tracking.resolve_grounding(request.object_id, found, error)

        try:
            self.run_in_background(tracking.camera, ground)
        except Exception as exc:  # noqa: BLE001 - a busy camera: the object is grounded again later
            tracking.resolve_grounding(request.object_id, None, describe_error(exc))

    def unload(self) -> None:
        with self.model_lock:
            device = self.pipeline.device if self.pipeline is not None else "cpu"
            self.pipeline = None
            self.tracking = {}
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # -- frames -------------------------------------------------------------------------------------------------
    def frame_for(self, camera: str, image_msg=None) -> StampedFrame:
        """The request's own image when it carries one, else the latest frame of `camera` ('' = the first)."""
        if image_msg is not None and len(image_msg.data) > 0:
            return StampedFrame(image_to_rgb(image_msg), image_msg.header, camera or "request", 0.0)
        name = camera or next(iter(self.cameras))
        if name not in self.cameras:
            raise VitronInputError(f"unknown camera {name!r}; cameras: {', '.join(self.cameras)}")
        frame = self.cameras[name].latest()
        if frame is None:
            raise VitronInputError(f"no frame received yet from camera {name!r}; is its image topic publishing?")
        return frame

    # -- requests -----------------------------------------------------------------------------------------------
    def query(
        self,
        request: str,
        camera: str = "",
        image_msg=None,
        points: Sequence[Any] = (),
        boxes: Sequence[Any] = (),
        request_id: str = "",
        progress: Callable[[str, str], None] | None = None,
        reply: str = "",
        task: str = "",
    ) -> QueryOutcome:
        """Query.srv / Ask.action / ~/query: answer `request` about a frame; points and boxes become regions.
        With `reply`, that reply is carried out (grounded) instead of one the LLM generates; with `task` (one of the
        grounder's, e.g. "segmentation") the reply must carry it out on the request."""
        request_id = request_id or uuid.uuid4().hex[:12]
        frame = None
        try:
            frame = self.frame_for(camera, image_msg)
            sketches = sketches_from_prompts(points, boxes, frame.rgb.shape[:2])
            pipeline = self._loaded()
            depth = self._capture(camera, frame.header)  # now: the models may outlast the depth ring
            if reply:
                result = pipeline.ground_reply(frame.rgb, request, reply, sketches, progress=progress)
            else:
                result, _ = pipeline(frame.rgb, request, sketches, progress=progress, task=task.strip() or None)
            spatial = self.lift(camera, frame.header, result.masks, depth)
            outputs = published_outputs(self.factory, result, frame.rgb, frame.header, request, request_id, self.overlay,
                                        self.cropped_masks, spatial)
            return QueryOutcome(outputs.answer, outputs, frame, result.timings)
        except QueryCancelled:
            error = "cancelled"
        except Exception as exc:  # noqa: BLE001 - contained: one bad request gives an error reply
            error = describe_error(exc)
        header = frame.header if frame is not None else self._empty_header(image_msg)
        return QueryOutcome(error_answer_msg(self.factory, header, request, request_id, error), None, frame)

    def edit_from_request(self, req, progress=None) -> QueryOutcome:
        """Edit.action: a query that must end in an edited or generated image. With `req.reply` the given
        invocation reply is carried out (parsed by the same strict parser) instead of one the LLM generates."""
        request_id = req.request_id or uuid.uuid4().hex[:12]
        if not req.reply.strip():
            outcome = self.query(req.request, req.camera, req.image, request_id=request_id, progress=progress)
        else:
            outcome = self.query(req.request or req.reply, req.camera, req.image, request_id=request_id,
                                 progress=progress, reply=req.reply)
        if outcome.outputs is not None and not outcome.outputs.synthetic_images():
            errors = "; ".join(outcome.answer.warnings) or "the reply calls no editor or generator"
            answer = error_answer_msg(self.factory, outcome.frame.header, req.request, request_id,
                                      f"no image was edited or generated: {errors}")
            return QueryOutcome(answer, None, outcome.frame, outcome.timings)
        return outcome

    def query_from_request(self, req, progress=None) -> QueryOutcome:
        """A Query.srv request or Ask.action goal (same fields) -> outcome."""
        return self.query(req.request, req.camera, req.image, req.points, req.boxes, req.request_id, progress,
                          task=req.task)

    def segment_from_request(self, req) -> SegmentOutcome:
        return self.segment(req.camera, req.image, req.points, req.boxes, bool(req.everything))

    def segment(
        self,
        camera: str = "",
        image_msg=None,
        points: Sequence[Any] = (),
        boxes: Sequence[Any] = (),
        everything: bool = False,
    ) -> SegmentOutcome:
        """Segment.srv: prompts only, no LLM. One mask per box, one for all points together, or everything."""
        frame = None
        try:
            frame = self.frame_for(camera, image_msg)
            prompts = segment_prompts(points, boxes, everything, frame.rgb.shape[:2])
            pipeline = self._loaded()
            depth = self._capture(camera, frame.header)
            masks, errors = pipeline.segment(frame.rgb, prompts, everything=everything)
            spatial = self.lift(camera, frame.header, masks, depth)
            return SegmentOutcome(mask_array_msg(self.factory, masks, frame.header, self.cropped_masks,
                                                 spatial.lifted if spatial else None), "; ".join(errors), frame)
        except Exception as exc:  # noqa: BLE001 - contained, as in query()
            header = frame.header if frame is not None else self._empty_header(image_msg)
            return SegmentOutcome(mask_array_msg(self.factory, [], header), describe_error(exc), frame)

    # -- tracking and clips --------------------------------------------------------------------------------------
    def tracking_for(self, camera: str = "") -> CameraTracking:
        self._loaded()
        name = camera or next(iter(self.cameras))
        if name not in self.cameras:
            raise VitronInputError(f"unknown camera {name!r}; cameras: {', '.join(self.cameras)}")
        if not self.tracking:
            raise VitronInputError(f"profile {self.pipeline.profile_name!r} has no tracker (add a tracker section)")
        return self.tracking[name]

    def add_objects(self, req) -> dict:
        """AddObjects.srv -> response fields (success false with the reason on any error)."""
        try:
            return self.tracking_for(req.camera).add_objects(req)
        except VitronInputError as error:
            return {"success": False, "message": str(error), "object_ids": [], "object_indices": []}

    def remove_object(self, req) -> dict:
        try:
            return self.tracking_for(req.camera).remove_object(req.object_id)
        except VitronInputError as error:
            return {"success": False, "message": str(error), "object_ids": [], "object_indices": []}

    def video_query(self, request: str, camera: str = "", num_frames: int = 0, request_id: str = "",
                    progress=None) -> VideoQueryOutcome:
        """VideoQuery.action: answer about the camera's recent frames; grounded objects are followed through them."""
        from ..core.video import ClipSampling

        request_id = request_id or uuid.uuid4().hex[:12]
        frames = []
        try:
            name = camera or next(iter(self.cameras))
            if name not in self.cameras:
                raise VitronInputError(f"unknown camera {name!r}; cameras: {', '.join(self.cameras)}")
            frames = self.cameras[name].recent()
            if not frames:
                raise VitronInputError(f"no frame received yet from camera {name!r}; is its image topic publishing?")
            sampling = ClipSampling(frames=int(num_frames) or self.video_frames)
            first = frames[0]
            depth = self._capture(name, first.header)
            result, _ = self._loaded().ask_clip([f.rgb for f in frames], request, sampling, progress=progress)
            outputs = published_outputs(self.factory, result, first.rgb, first.header, request, request_id, self.overlay,
                                        self.cropped_masks, self.lift(name, first.header, result.masks, depth))
            tracks = clip_tracks_msgs(self.factory, result.tracks, [f.header for f in frames]) if result.tracks else []
            return VideoQueryOutcome(outputs.answer, tracks, len(frames), outputs, result.timings)
        except QueryCancelled:
            error = "cancelled"
        except Exception as exc:  # noqa: BLE001 - contained: one bad request gives an error reply
            error = describe_error(exc)
        header = frames[0].header if frames else self.factory.new("std_msgs/msg/Header")
        answer = error_answer_msg(self.factory, header, request, request_id, error)
        return VideoQueryOutcome(answer, [], len(frames), None)

    def _capture(self, camera: str, header):
        """`camera`'s depth for the image with `header` ('' = the first camera; a request's own image is matched
        to it by stamp), taken before the models run; None without depth."""
        if self.lifter is None:
            return None
        return self.lifter.capture(camera or next(iter(self.cameras)), header)

    def lift(self, camera: str, header, masks: Sequence[GroundedMask], captured=None) -> Lifting3D | None:
        """The masks' 3D from `camera`'s depth at `header`'s stamp ('' = the first camera); None without depth."""
        if self.lifter is None:
            return None
        name = camera or next(iter(self.cameras))
        return self.lifter.lift(name, header, [(m.mask, m.box_xyxy) for m in masks], self.factory, captured)

    def _loaded(self):
        with self.model_lock:
            pipeline = self.pipeline
        if pipeline is None:
            raise VitronInputError("models are not loaded: activate the node (lifecycle 'activate') first")
        return pipeline

    def _empty_header(self, image_msg):
        return image_msg.header if image_msg is not None else self.factory.new("std_msgs/msg/Header")


def sketches_from_prompts(points: Sequence[Any], boxes: Sequence[Any], image_hw: tuple[int, int]) -> list[Sketch]:
    """PixelPoint / PixelBox messages -> validated sketches, named by their place in the request."""
    height, width = image_hw
    sketches = []
    for i, point in enumerate(points):
        if int(point.label) != 1:
            raise VitronInputError(
                f"points[{i}] has label {int(point.label)}: a query's points mark regions (label 1); "
                "background points (label 0) only apply to the Segment service"
            )
        sketches.append(Sketch.point(float(point.x), float(point.y)))
    sketches.extend(Sketch.box(b.x1, b.y1, b.x2, b.y2) for b in boxes)
    for i, sketch in enumerate(sketches):
        name = f"points[{i}]" if i < len(points) else f"boxes[{i - len(points)}]"
        sketch.validate(height, width, name=name)
    return sketches


def segment_prompts(points, boxes, everything: bool, image_hw) -> list[tuple[str, dict]]:
    """Segment.srv prompts -> (label, prompt) pairs for `VitronPipeline.segment`, each checked against the image."""
    if everything:
        return []
    if not points and not boxes:
        raise VitronInputError("Segment needs at least one point or box, or everything=true")
    height, width = image_hw
    prompts = []
    for i, b in enumerate(boxes):
        Sketch.box(b.x1, b.y1, b.x2, b.y2).validate(height, width, name=f"boxes[{i}]")
        prompts.append((f"box {i}", {"box_xyxy": (float(b.x1), float(b.y1), float(b.x2), float(b.y2))}))
    if points:
        for i, p in enumerate(points):
            Sketch.point(p.x, p.y).validate(height, width, name=f"points[{i}]")
            if int(p.label) not in (0, 1):
                raise VitronInputError(f"points[{i}] has label {int(p.label)}; use 1 (object) or 0 (background)")
        if not any(int(p.label) == 1 for p in points):
            raise VitronInputError("points are all background (label 0): mark at least one point on the object")
        xy = np.asarray([[float(p.x), float(p.y)] for p in points], np.float32)
        prompts.append(("points", {"points_xy": xy, "point_labels": np.asarray([int(p.label) for p in points])}))
    return prompts
