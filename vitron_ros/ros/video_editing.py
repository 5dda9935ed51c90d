"""EditVideo.action without rclpy: an object edited through a camera's recent frames or its live stream.

The node's execute callback calls `run_edit_video_goal`; what it publishes (feedback, each edited frame for
~/edited) goes out through the callables it is given, so the tests run it on rosbags' classes. Failures become the
result's `answer.error`; nothing raises out of here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any


from ..core.errors import QueryCancelled, VitronInputError
from ..core.results import SyntheticImage
from .frame_buffer import StampedFrame
from .handlers import VitronHandlers, describe_error
from .interfaces import MessageFactory, stamp_ns
from .result_messages import error_answer_msg, synthetic_image_msg


def _frames(handlers: VitronHandlers, camera: str, goal, is_stopped: Callable[[], bool], skipped: list[int],
            poll_s: float):
    """The frames to edit: the ring's (oldest first), or live ones as they arrive (the newest wins)."""
    frames = handlers.cameras[camera]
    limit = int(goal.max_frames) or None
    if not goal.live:
        recent = frames.recent()
        yield from recent[:limit]
        return
    last = frames.latest()
    if last is None:
        return
    yield last
    count, end = 1, stamp_ns(last.header) + round(float(goal.duration_s) * 1e9) if goal.duration_s > 0 else None
    while not is_stopped() and (limit is None or count < limit):
        newest = frames.latest()
        if newest is None or newest.sequence == last.sequence:
            time.sleep(poll_s)
            continue
        if end is not None and stamp_ns(newest.header) > end:
            return
        skipped[0] += newest.sequence - last.sequence - 1
        last = newest
        count += 1
        yield newest


def run_edit_video_goal(handlers: VitronHandlers, goal, factory: MessageFactory, is_stopped: Callable[[], bool],
                        publish_feedback: Callable[[Any], None], publish_image: Callable[[Any], None],
                        poll_s: float = 0.02) -> tuple[Any, str]:
    """-> (EditVideo_Result, outcome) with outcome 'succeeded', 'canceled' or 'aborted'."""
    from ..core.video_edit import TrackedEdit

    request_id = goal.request_id or uuid.uuid4().hex[:12]
    result = factory.new("vitron_ros_msgs/action/EditVideo_Result")
    skipped = [0]
    first: StampedFrame | None = None

    def on_step(step: int, steps: int) -> None:  # a cancel stops the denoising loop
        if is_stopped():
            raise QueryCancelled("goal cancelled")

    try:
        pipeline = handlers._loaded()
        camera = goal.camera or next(iter(handlers.cameras))
        if camera not in handlers.cameras:
            raise VitronInputError(f"unknown camera {camera!r}; cameras: {', '.join(handlers.cameras)}")
        if not goal.live and len(handlers.cameras[camera].recent()) < 2:
            raise VitronInputError(f"clip too short: camera {camera!r} has {len(handlers.cameras[camera].recent())} "
                                   "recent frame(s); a video edit needs at least 2 (or use live)")
        total = 0 if goal.live else min(len(handlers.cameras[camera].recent()), int(goal.max_frames) or 1 << 30)
        edit = None
        for frame in _frames(handlers, camera, goal, is_stopped, skipped, poll_s):
            if is_stopped():
                raise QueryCancelled("goal cancelled")
            if edit is None:
                first = frame
                edit = TrackedEdit.start(pipeline, frame.rgb, goal.request, goal.reply or None)
            done = edit.step(frame.rgb, on_step=on_step)
            if done.edited:
                planned = edit.edits[0]
                image = SyntheticImage(kind="edited", image=done.image, region=done.region, label=planned.label,
                                       specialist=planned.specialist, task=planned.call.task)
                publish_image(synthetic_image_msg(factory, image, frame.header, request_id, done.index, total))
                result.frames_edited += 1
            else:
                result.frames_unchanged += 1
            publish_feedback(factory.new("vitron_ros_msgs/action/EditVideo_Feedback", frame=done.index + 1,
                                         frames=total, edited=done.edited, note="; ".join(done.notes)[:500]))
        if edit is None:
            raise VitronInputError(f"no frame received yet from camera {camera!r}; is its image topic publishing?")
        result.frames_skipped = skipped[0]
        plan = edit.plan
        answer = factory.new("vitron_ros_msgs/msg/Answer", header=first.header, request_id=request_id,
                             request=goal.request, text=plan.answer, raw_reply=plan.raw_reply,
                             warnings=list(plan.errors), latency_ms=float(plan.timings.get("total", 0.0) * 1000))
        result.answer = answer
        if result.frames_edited == 0:
            answer.error = "the object was not visible in any frame: nothing was edited"
            return result, "aborted"
        return result, "canceled" if is_stopped() else "succeeded"
    except QueryCancelled:
        error, outcome = "cancelled", "canceled"
    except Exception as exc:  # noqa: BLE001 - contained: the goal ends with the reason
        error, outcome = describe_error(exc), "aborted"
    header = first.header if first is not None else factory.new("std_msgs/msg/Header")
    result.answer = error_answer_msg(factory, header, goal.request, request_id, error)
    result.frames_skipped = skipped[0]
    return result, outcome


