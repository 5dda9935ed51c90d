"""Live-stream object tracking on SAM 2 (transformers' Sam2VideoModel), one frame at a time, in bounded memory.

    tracker = StreamTracker.from_config(profile.section("tracker"), grounder=pipeline.ground_request)
    tracker.add_object(ObjectPrompt(request="the red circle"))   # or points / box / mask
    for image in camera:                                          # (H, W, 3) uint8 RGB, frames arrive one by one
        tracks = tracker.step(image)                              # FrameTracks: status, score, mask per object

Grounding a language request runs the LLM, which takes far longer than a frame. Offline (a video file) the tracker
calls its `grounder` inline. On a live stream, `defer_grounding=True` keeps the LLM off the frame path: a step only
lists the groundings it needs (`FrameTracks.grounding_requests`), the caller runs them elsewhere and hands each
result back with `resolve_grounding`, and the object is prompted with it on the next frame.

Each object has its own SAM 2 inference session (its memory bank), and all sessions share one vision-feature cache,
so the image encoder runs once per frame however many objects there are; removing an object is dropping its
session. After every frame, outputs older than `memory_window` frames, all but `max_conditioning_frames` prompted
frames and the stored pixel frames are pruned, which is what keeps per-frame cost and memory flat on a stream that
never ends (transformers' session otherwise keeps every frame it has seen).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import VitronInputError
from ..geometry import check_box, check_image, check_point
from ..masks import mask_to_box
from .state import (
    FrameTracks,
    GroundingRequest,
    ObjectFrameState,
    ObjectPrompt,
    ObjectStatus,
)

if TYPE_CHECKING:  # the tracker specialist's config, for annotations only (that module imports this one)
    from ..specialists.tracker import TrackerConfig

# (image, request) -> (mask (H, W) bool, score) of what the request names, or None when nothing matches.
Grounder = Callable[[np.ndarray, str], "tuple[np.ndarray, float] | None"]

_SESSION_OBJECT = 1  # each session tracks exactly one object, under this SAM 2 object id


@dataclass
class TrackedObject:
    """Per-object state that outlives frames: its prompt, its SAM 2 session and its visibility history."""

    object_id: str
    prompt: ObjectPrompt
    label: str
    session: object | None = None  # Sam2VideoInferenceSession once conditioned; None until the first prompt lands
    pending: ObjectPrompt | None = None  # a prompt to apply on the next frame
    frames_unseen: int = 0
    last_reground: int = -(10**9)  # frame index of the last re-grounding attempt
    grounding_in_flight: bool = False  # a deferred grounding was asked for and has not come back yet
    status: ObjectStatus = ObjectStatus.LOST


@dataclass
class StreamState:
    """Everything one stream owns: frame geometry, frame counter, objects by id, the shared feature cache."""

    image_hw: tuple[int, int] | None = None  # fixed by the first frame; later frames must match
    frames_seen: int = 0
    objects: dict[str, TrackedObject] = field(default_factory=dict)
    feature_cache: object | None = None  # Sam2VideoInferenceCache shared by every object's session
    pending_errors: list[str] = field(default_factory=list)  # deferred groundings that failed, for the next frame


class StreamTracker:
    def __init__(self, model, processor, config: TrackerConfig, device: str = "cpu", grounder: Grounder | None = None,
                 defer_grounding: bool = False):
        import torch

        self.model = model.eval()
        self.processor = processor
        self.config = config
        self.device = device
        self.dtype = next(model.parameters()).dtype
        self.grounder = grounder
        self.defer_grounding = defer_grounding  # list groundings in FrameTracks instead of calling the grounder
        self.state = StreamState()
        self._ids = itertools.count(1)
        self._torch = torch
        # SAM 2 reads num_maskmem - 1 past memories and up to max_object_pointers_in_encoder - 1 pointers: a window
        # shorter than that would silently change its predictions, so the window is at least that long.
        reach = max(model.config.num_maskmem, model.config.max_object_pointers_in_encoder)
        self.memory_window = max(config.memory_window, reach)

    @classmethod
    def from_config(cls, config: TrackerConfig, device: str = "cpu", grounder: Grounder | None = None,
                    fetch_hint: str = "") -> StreamTracker:
        from ..model.sam2_loader import load_sam2_video

        model, processor = load_sam2_video(config.model, config.revision, device, config.dtype, fetch_hint)
        return cls(model, processor, config, device, grounder)

    # Objects ----------------------------------------------------------------------------------------------------

    def add_object(self, prompt: ObjectPrompt, object_id: str | None = None) -> str:
        """Start tracking what `prompt` names from the next frame on; returns its id (stable until removed).

        Raises VitronInputError for an empty or mixed prompt, coordinates outside the stream's frames, a mask of the
        wrong size, an id already in use, or a request without a grounder. The stream is untouched on error.
        """
        self.check_prompt(prompt)
        if object_id is None:
            object_id = f"obj{next(self._ids)}"
            while object_id in self.state.objects:
                object_id = f"obj{next(self._ids)}"
        elif not isinstance(object_id, str) or not object_id.strip():
            raise VitronInputError(f"object id must be non-empty text, got {object_id!r}")
        elif object_id in self.state.objects:
            raise VitronInputError(f"object id {object_id!r} is already tracked; remove it first or pick another id")
        label = prompt.request.strip() if prompt.request is not None else prompt.kind
        self.state.objects[object_id] = TrackedObject(object_id, prompt, label, pending=prompt)
        return object_id

    def remove_object(self, object_id: str) -> None:
        if object_id not in self.state.objects:
            known = ", ".join(sorted(self.state.objects)) or "none"
            raise VitronInputError(f"unknown object id {object_id!r}; tracked ids: {known}")
        del self.state.objects[object_id]  # its session (memory bank) goes with it

    def reset(self) -> None:
        """Forget every object and the frame geometry: the next frame starts a new stream."""
        self.state = StreamState()

    @property
    def object_ids(self) -> list[str]:
        return list(self.state.objects)

    def check_prompt(self, prompt: ObjectPrompt) -> None:
        if not isinstance(prompt, ObjectPrompt):
            raise VitronInputError(f"prompt must be an ObjectPrompt, got {type(prompt).__name__}")
        if prompt.request is not None:
            if not isinstance(prompt.request, str) or not prompt.request.strip():
                raise VitronInputError("the request to track is empty; say what to track, e.g. 'the red mug'")
            if self.grounder is None and not self.defer_grounding:
                raise VitronInputError("this tracker has no grounder, so it cannot start from a language request")
            if prompt.kind != "request":
                raise VitronInputError(f"give a request or geometry, not both (got {prompt.kind})")
            return
        kinds = prompt.kind
        if kinds == "none":
            raise VitronInputError("empty prompt: give a request, points, a box or a mask")
        if "mask" in kinds and kinds != "mask":
            raise VitronInputError(f"a mask prompt cannot be combined with points or a box (got {kinds})")
        hw = self.state.image_hw
        if prompt.points_xy is not None:
            points = np.asarray(prompt.points_xy, dtype=np.float64).reshape(-1, 2)
            labels = np.ones(len(points)) if prompt.point_labels is None else np.asarray(prompt.point_labels).reshape(-1)
            if len(points) == 0:
                raise VitronInputError("points prompt has no points")
            if len(labels) != len(points):
                raise VitronInputError(f"{len(points)} points but {len(labels)} point labels")
            if not np.isin(labels, (0, 1)).all():
                raise VitronInputError(f"point labels must be 1 (foreground) or 0 (background), got {labels.tolist()}")
            for i, point in enumerate(points):  # before the first frame: finite and not negative
                check_point(point, *((hw[1], hw[0]) if hw is not None else (math.inf, math.inf)), name=f"point {i}")
        if prompt.box_xyxy is not None:
            if hw is not None:
                check_box(prompt.box_xyxy, hw[1], hw[0])
            else:
                check_box(prompt.box_xyxy, math.inf, math.inf)
        if prompt.mask is not None:
            mask = np.asarray(prompt.mask)
            if mask.ndim != 2:
                raise VitronInputError(f"mask prompt must be (H, W), got shape {mask.shape}")
            if hw is not None and mask.shape != hw:
                raise VitronInputError(f"mask prompt is {mask.shape[1]}x{mask.shape[0]}, frames are {hw[1]}x{hw[0]}")
            if not mask.any():
                raise VitronInputError("mask prompt is empty")

    # Frames -----------------------------------------------------------------------------------------------------

    def step(self, image: np.ndarray) -> FrameTracks:
        """Track every object into the next frame of the stream: (H, W, 3) uint8 RGB -> FrameTracks.

        A frame of another size than the stream's raises VitronInputError and changes nothing, so the caller can
        drop it and go on. A failure of one object (a re-grounding that finds nothing) is reported in
        `FrameTracks.errors` and never stops the others.
        """
        torch = self._torch
        started = time.perf_counter()
        image = check_image(image, "frame")
        hw = tuple(image.shape[:2])
        start_errors = []
        if self.state.image_hw is None:
            start_errors = self._start_stream(hw)
        elif hw != self.state.image_hw:
            expected = self.state.image_hw
            raise VitronInputError(
                f"frame is {hw[1]}x{hw[0]} but this stream's frames are {expected[1]}x{expected[0]}; "
                "reset the tracker to start a new stream"
            )
        frame_index = self.state.frames_seen
        self.state.frames_seen += 1
        tracks = FrameTracks(frame_index=frame_index, image_hw=hw, errors=start_errors + self.state.pending_errors)
        self.state.pending_errors = []
        pixel_values = None
        for obj in list(self.state.objects.values()):
            prompted = self._apply_prompts(obj, image, frame_index, tracks)
            if obj.session is None:  # nothing to track yet: its request has not been found
                tracks.objects.append(self._unseen(obj))
                continue
            if pixel_values is None:
                # torch warns on read-only arrays (frames decoded from ROS messages are views); copy only those
                writable = np.require(image, requirements="W")
                pixel_values = self.processor(images=writable, return_tensors="pt").pixel_values[0]
            try:
                with torch.inference_mode():
                    output = self.model(inference_session=obj.session, frame=pixel_values, frame_idx=frame_index)
                    masks = self.processor.post_process_masks(
                        [output.pred_masks], original_sizes=[list(hw)], binarize=True
                    )[0]
            except Exception as error:  # noqa: BLE001 - one object's failure must not stop the others
                tracks.errors.append(f"{obj.object_id}: SAM 2 failed on frame {frame_index}: "
                                     f"{type(error).__name__}: {error}")
                tracks.objects.append(self._judge(obj, np.zeros(hw, bool), -math.inf, prompted))
            else:
                mask = masks[0, 0].cpu().numpy().astype(bool)
                logit = float(output.object_score_logits.reshape(-1)[0])
                tracks.objects.append(self._judge(obj, mask, logit, prompted))
            self._prune(obj.session, frame_index)  # after a failure too: a failing object must not grow
        tracks.seconds = time.perf_counter() - started
        return tracks

    def _start_stream(self, hw: tuple[int, int]) -> list[str]:
        """Fix the stream's frame size; objects added before it whose coordinates do not fit are dropped."""
        from transformers.models.sam2_video.modeling_sam2_video import (
            Sam2VideoInferenceCache,
        )

        self.state.image_hw = hw
        self.state.feature_cache = Sam2VideoInferenceCache(inference_device=self.device,
                                                           inference_state_device=self.device)
        errors = []
        for obj in list(self.state.objects.values()):  # their geometry was checked without a size
            if obj.pending is not None and obj.pending.request is None:
                try:
                    self.check_prompt(obj.pending)
                except VitronInputError as error:
                    del self.state.objects[obj.object_id]
                    errors.append(f"{obj.object_id} removed: {error}")
        return errors

    def _new_session(self):
        from transformers.models.sam2_video.modeling_sam2_video import (
            Sam2VideoInferenceSession,
        )

        height, width = self.state.image_hw
        session = Sam2VideoInferenceSession(video_height=height, video_width=width, inference_device=self.device,
                                            inference_state_device=self.device, video_storage_device=self.device,
                                            dtype=self.dtype)
        session.cache = self.state.feature_cache  # one image encoding per frame for all objects
        return session

    def _apply_prompts(self, obj: TrackedObject, image: np.ndarray, frame_index: int, tracks: FrameTracks) -> bool:
        """Condition the object's session on this frame if a prompt is due; True when one was applied."""
        errors = tracks.errors
        prompt = obj.pending
        if prompt is None and obj.status is ObjectStatus.LOST and obj.prompt.request is not None:
            if frame_index - obj.last_reground >= self.config.reacquire_interval and not obj.grounding_in_flight:
                prompt = obj.prompt  # re-ground the original request
        if prompt is None:
            return False
        obj.pending = None
        if prompt.request is not None:
            obj.last_reground = frame_index
            if self.defer_grounding:
                obj.grounding_in_flight = True
                tracks.grounding_requests.append(GroundingRequest(obj.object_id, prompt.request, frame_index, image))
                return False
            try:
                found = self.grounder(image, prompt.request)
            except Exception as exc:  # a grounding failure is this object's problem, not the stream's
                errors.append(f"{obj.object_id}: grounding {prompt.request!r} failed: {type(exc).__name__}: {exc}")
                return False
            if found is None or not np.asarray(found[0]).any():
                errors.append(f"{obj.object_id}: {prompt.request!r} not found in frame {frame_index}")
                return False
            prompt = ObjectPrompt(mask=np.asarray(found[0], bool))
        if obj.session is None:
            obj.session = self._new_session()
        self._condition(obj.session, prompt, frame_index)
        return True

    def resolve_grounding(self, object_id: str, found: tuple[np.ndarray, float] | None, error: str = "") -> None:
        """Hand back a deferred grounding: `found` is the grounder's (mask, score) or None; the object is prompted
        with the mask on the next frame. A failure or a miss is reported in the next frame's errors, and a lost
        object is grounded again after `reacquire_interval` frames. Results for removed objects are ignored."""
        obj = self.state.objects.get(object_id)
        if obj is None or not obj.grounding_in_flight:
            return
        obj.grounding_in_flight = False
        request = obj.prompt.request
        mask = None if found is None else np.asarray(found[0], bool)
        if error:
            self.state.pending_errors.append(f"{object_id}: grounding {request!r} failed: {error}")
        elif mask is None or not mask.any():
            self.state.pending_errors.append(f"{object_id}: {request!r} not found")
        elif mask.shape != self.state.image_hw:
            self.state.pending_errors.append(f"{object_id}: grounding of {request!r} came back for another frame size")
        else:
            obj.pending = ObjectPrompt(mask=mask)

    def _condition(self, session, prompt: ObjectPrompt, frame_index: int) -> None:
        add = self.processor.add_inputs_to_inference_session
        if prompt.mask is not None:
            add(session, frame_idx=frame_index, obj_ids=[_SESSION_OBJECT], input_masks=[np.asarray(prompt.mask, bool)])
            return
        points = labels = boxes = None
        if prompt.points_xy is not None:
            xy = np.asarray(prompt.points_xy, dtype=np.float32).reshape(-1, 2)
            lab = np.ones(len(xy), np.int64) if prompt.point_labels is None else np.asarray(prompt.point_labels)
            points = [[xy.tolist()]]  # image, object, points, xy
            labels = [[lab.astype(int).reshape(-1).tolist()]]
        if prompt.box_xyxy is not None:
            boxes = [[[float(v) for v in prompt.box_xyxy]]]
        add(session, frame_idx=frame_index, obj_ids=[_SESSION_OBJECT], input_points=points, input_labels=labels,
            input_boxes=boxes, original_size=self.state.image_hw)

    def _judge(self, obj: TrackedObject, mask: np.ndarray, logit: float, prompted: bool) -> ObjectFrameState:
        """Tracked / occluded / lost from SAM 2's object score and the mask."""
        visible = logit > self.config.presence_threshold and int(mask.sum()) >= self.config.min_mask_area
        if visible:
            obj.frames_unseen = 0
            obj.status = ObjectStatus.TRACKED
        else:
            obj.frames_unseen += 1
            obj.status = ObjectStatus.OCCLUDED if obj.frames_unseen <= self.config.lost_after else ObjectStatus.LOST
            mask = np.zeros_like(mask)
        score = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))
        box = mask_to_box(mask) if visible else None
        return ObjectFrameState(obj.object_id, obj.label, obj.status, score, mask, box, obj.frames_unseen, prompted)

    def _unseen(self, obj: TrackedObject) -> ObjectFrameState:
        obj.frames_unseen += 1
        obj.status = ObjectStatus.LOST  # never found: nothing for SAM 2 to follow until its request is grounded
        height, width = self.state.image_hw
        return ObjectFrameState(obj.object_id, obj.label, obj.status, 0.0, np.zeros((height, width), bool), None,
                                obj.frames_unseen)

    def _prune(self, session, frame_index: int) -> None:
        """Drop what SAM 2 will never read again, so a stream's state stays the same size at frame 10 and 10^6."""
        oldest = frame_index - self.memory_window + 1  # keep the current frame and the window - 1 before it
        session.processed_frames = {i: f for i, f in (session.processed_frames or {}).items() if i == frame_index}
        for per_object in session.output_dict_per_obj.values():
            non_cond = per_object["non_cond_frame_outputs"]
            for index in [i for i in non_cond if i < oldest]:
                del non_cond[index]
            cond = per_object["cond_frame_outputs"]
            if len(cond) > self.config.max_conditioning_frames:
                # keep the first prompt (what the user asked for) and the most recent re-acquisitions
                ordered = sorted(cond)
                keep = {ordered[0], *ordered[len(ordered) - self.config.max_conditioning_frames + 1 :]}
                for index in [i for i in ordered if i not in keep]:
                    del cond[index]
        for tracked in session.frames_tracked_per_obj.values():
            for index in [i for i in tracked if i < oldest]:
                del tracked[index]
        for inputs in (*session.point_inputs_per_obj.values(), *session.mask_inputs_per_obj.values()):
            for index in [i for i in inputs if i < frame_index]:
                del inputs[index]  # prompts are consumed by the frame they were given on
