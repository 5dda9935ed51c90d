"""One camera's tracking thread: steps the tracker on the newest frame whenever one arrives (latest wins).

Subscription callbacks only store the frame and `wake()` this loop, so model work never runs in a callback and a
slow tracker drops frames instead of queueing them: ~/tracks runs at the camera's rate or the tracker's, whichever
is lower.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .frame_buffer import CameraFrames
from .tracking import CameraTracking, TrackStep


@dataclass(frozen=True)
class LoopStats:
    """What one camera's tracking thread did: frames stepped, frames replaced by a newer one before it got to them,
    and where a published frame's time went (medians over the last frames, milliseconds)."""

    processed: int
    skipped: int  # decoded frames never tracked: a newer frame arrived first (latest wins)
    frame_ms: float  # conversion in + tracking + message build + publish
    ros_ms: float  # conversion in + message build + publish: what the ROS layer adds to the model's work
    published_bytes: int  # mask and overlay payload bytes published (image data only)


class TrackingLoop:
    def __init__(self, frames: CameraFrames, tracking: Callable[[], CameraTracking | None],
                 publish: Callable[[TrackStep], None], on_error: Callable[[str], None] = print):
        self.frames = frames
        self.tracking = tracking  # the camera's tracking now (None while models are unloaded)
        self.publish = publish
        self.on_error = on_error
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last = None  # the frame processed last, so a wake without a new frame does nothing
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._processed = self._skipped = self._bytes = 0
        self._costs: deque[tuple[float, float]] = deque(maxlen=300)  # (whole frame s, ROS part s) per published frame

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"tracking-{self.frames.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def run_once(self) -> TrackStep | None:
        """Process the newest frame if it is new and something is tracked; what was published, or None."""
        frame = self.frames.latest()
        tracking = self.tracking()
        if frame is None or frame is self._last or tracking is None:
            return None
        skipped = frame.sequence - self._last.sequence - 1 if self._last is not None else 0
        self._last = frame
        step = tracking.process(frame)
        publish_s = 0.0
        if step is not None:
            started = time.perf_counter()
            self.publish(step)
            publish_s = time.perf_counter() - started
        with self._lock:
            self._processed += 1
            self._skipped += max(0, skipped)
            if step is not None:
                ros_s = frame.decode_s + step.build_s + publish_s
                self._costs.append((ros_s + step.track_s, ros_s))
                self._bytes += step.payload_bytes
        return step

    def stats(self) -> LoopStats:
        with self._lock:
            costs = np.asarray(self._costs) * 1000.0 if self._costs else np.zeros((1, 2))
            return LoopStats(self._processed, self._skipped, float(np.median(costs[:, 0])),
                             float(np.median(costs[:, 1])), self._bytes)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.run_once()
            except Exception as error:  # noqa: BLE001 - one bad frame never ends tracking on this camera
                self.on_error(f"tracking on {self.frames.name}: {type(error).__name__}: {error}")
