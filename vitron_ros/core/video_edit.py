"""Video editing through the tracker's masks: a clip or a live stream edited frame by frame, consistently.

    edit = TrackedEdit.start(pipeline, first_frame, "remove the red circle")   # the LLM plans, the segmenter grounds
    for image in frames:
        out = edit.step(image)                       # the tracker follows the object, the editor edits inside it

1. Plan on the first frame: the request goes through VITRON like any edit (LLM -> editor invocation -> the
   segmenter's mask); each image specialist's call on a grounded object is kept (task, instruction, [SEG] signal).
2. Every frame: SAM 2 follows each edited object (a live-stream tracker prompted with the first frame's mask), and
   the same call runs with that frame's mask.
3. Consistency: every frame is denoised from the same noise (the editor's fixed seed) with the same conditioning,
   so the repainted region changes only as the frame does. Pixels outside the edited region are the frame's own,
   byte for byte, in every frame (the editor composites).

A frame in which the object is not visible passes through unchanged, and says so. Memory is bounded: one frame in,
one frame out; nothing is kept but the tracker's memory bank.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import VitronInputError
from .results import VitronResult
from .specialists import SPECIALISTS, Frame, SpecialistCall
from .tracking.state import ObjectPrompt


@dataclass
class EditedFrame:
    index: int  # 0, 1, ... in the stream
    image: np.ndarray  # (H, W, 3) uint8 RGB: the edited frame (the input itself where nothing was edited)
    region: np.ndarray  # (H, W) bool: the pixels the edits may have changed; every other pixel is the input's
    masks: list[np.ndarray]  # the tracked mask of each edited object in this frame (empty where not visible)
    edited: bool  # at least one edit ran on this frame
    seconds: float  # tracking + editing
    notes: list[str] = field(default_factory=list)  # why an object was not edited here


@dataclass(frozen=True)
class _PlannedEdit:
    specialist: str  # the image specialist (registry name)
    call: SpecialistCall  # its call on the first frame, mask included
    object_id: str  # the object the tracker follows for it
    label: str


def _tracker_name(names) -> str:
    """The loaded specialist that follows objects through frames (the registry's `follows_clip` entry)."""
    found = [name for name in names if SPECIALISTS[name].follows_clip]
    if not found:
        raise VitronInputError("video editing needs a tracker (SAM 2) in the profile: add a tracker section")
    return found[0]


class TrackedEdit:
    """One request applied to a stream of frames of one size. Not thread-safe: one stream, one caller."""

    def __init__(self, pipeline, plan: VitronResult, edits: list[_PlannedEdit], stream, image_hw: tuple[int, int]):
        self.pipeline = pipeline
        self.plan = plan  # the first frame's result: answer, invocations, masks
        self.edits = edits
        self.stream = stream  # a StreamTracker following every edited object
        self.image_hw = image_hw
        self.frames = 0
        self.edited_frames = 0

    @classmethod
    def start(cls, pipeline, first: np.ndarray, request: str, reply: str | None = None, progress=None) -> TrackedEdit:
        """Plan `request` on `first` (through the LLM, or the given invocation `reply`) and start following every
        object it edits. Raises VitronInputError when the request edits no object the segmenter found."""
        tracker_name = _tracker_name(pipeline.specialists.names)
        if reply:
            plan = pipeline.ground_reply(first, request, reply, progress=progress)
        else:
            plan, _ = pipeline(first, request, progress=progress)
        planned = []
        for index, (name, call) in sorted(plan.calls.items()):
            entry = SPECIALISTS[name]
            task = entry.tasks.get(call.task)
            if entry.output == "images" and task is not None and task.grounded and call.mask is not None:
                planned.append((index, name, call))
        if not planned:
            why = "; ".join(plan.errors) or f"the reply {plan.raw_reply!r} edits no object"
            raise VitronInputError(f"nothing to track: the request must edit an object the segmenter finds ({why})")
        with pipeline.specialists.using(tracker_name) as tracker:
            stream = tracker.stream()
        edits = [
            _PlannedEdit(name, call, stream.add_object(ObjectPrompt(mask=call.mask)), f"{call.task}: {call.instruction}")
            for _, name, call in planned
        ]
        return cls(pipeline, plan, edits, stream, first.shape[:2])

    def step(self, image: np.ndarray, on_step: Callable[[int, int], None] | None = None) -> EditedFrame:
        """Follow the objects into `image` (H, W, 3) uint8 RGB and edit them there."""
        if image.shape[:2] != self.image_hw:
            raise VitronInputError(f"frame {self.frames} is {image.shape[1]}x{image.shape[0]} but the stream's frames "
                                   f"are {self.image_hw[1]}x{self.image_hw[0]}")
        started = time.perf_counter()
        tracks = self.stream.step(image)
        states = {state.object_id: state for state in tracks.objects}
        current, region = image, np.zeros(self.image_hw, bool)
        masks, notes, edited = [], list(tracks.errors), False
        for edit in self.edits:
            state = states.get(edit.object_id)
            mask = state.mask if state is not None and state.mask is not None else np.zeros(self.image_hw, bool)
            masks.append(mask)
            if not mask.any():
                notes.append(f"{edit.label}: the object is not visible in frame {self.frames}")
                continue
            call = dataclasses.replace(edit.call, mask=mask)
            lock = self.pipeline.specialist_locks.get(edit.specialist)
            if lock is not None:
                with lock:
                    (output,) = self.pipeline.run_specialist(edit.specialist, Frame(current, on_step=on_step), [call])
            else:
                (output,) = self.pipeline.run_specialist(edit.specialist, Frame(current, on_step=on_step), [call])
            if isinstance(output, Exception):
                notes.append(f"{edit.label}: {output}")
                continue
            current, region, edited = output.images[0], region | output.masks[0], True
        self.frames += 1
        self.edited_frames += edited
        return EditedFrame(self.frames - 1, current, region, masks, edited, time.perf_counter() - started, notes)
