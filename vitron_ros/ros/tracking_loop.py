"""One camera's tracking thread: steps the tracker on the newest frame whenever one arrives (latest wins).

Subscription callbacks only store the frame and `wake()` this loop, so model work never runs in a callback and a
slow tracker drops frames instead of queueing them: ~/tracks runs at the camera's rate or the tracker's, whichever
is lower.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .frame_buffer import CameraFrames
from .tracking import CameraTracking, TrackStep


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
        self._last = frame
        step = tracking.process(frame)
        if step is not None:
            self.publish(step)
        return step

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
