"""Camera frames as the node keeps them: latest-wins for queries, plus a ring of recent frames for video use.

Subscription callbacks only decode and store here (model work never runs in them). Thread-safe: callbacks write
while query workers read.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .image_conversions import ImageConversionError, compressed_to_rgb, image_to_rgb


@dataclass(frozen=True)
class StampedFrame:
    rgb: np.ndarray  # (H, W, 3) uint8 RGB
    header: Any  # std_msgs/Header of the source image, copied onto every output
    camera: str
    received_s: float  # monotonic time of arrival
    decode_s: float = 0.0  # time spent converting the message to RGB
    sequence: int = 0  # 1, 2, ... per decoded frame of this camera


@dataclass(frozen=True)
class CameraStats:
    received: int  # messages that arrived
    dropped_rate_limit: int  # skipped, arriving faster than max_rate_hz
    conversion_errors: int  # could not be decoded (encoding, sizes, corrupt compression)
    last_error: str
    input_rate_hz: float  # arrival rate over the last few seconds


class CameraFrames:
    """One camera's frames. `max_rate_hz` > 0 drops frames arriving faster than that before decoding them."""

    RATE_WINDOW_S = 2.0

    def __init__(self, name: str, ring_length: int = 16, max_rate_hz: float = 0.0, clock: Callable = time.monotonic):
        if ring_length < 1:
            raise ValueError(f"ring_length must be >= 1, got {ring_length}")
        if max_rate_hz < 0:
            raise ValueError(f"max_rate_hz must be >= 0, got {max_rate_hz}")
        self.name = name
        self.max_rate_hz = max_rate_hz
        self._clock = clock
        self._lock = threading.Lock()
        self._ring: deque[StampedFrame] = deque(maxlen=ring_length)
        self._arrivals: deque[float] = deque()
        self._next_due_s = -float("inf")  # when the rate limit lets the next frame in
        self._received = self._dropped = self._errors = self._decoded = 0
        self._last_error = ""

    def add_image(self, msg) -> bool:
        """sensor_msgs/Image -> stored frame. False when rate-limited or undecodable (counted, never raised)."""
        return self._add(msg, image_to_rgb)

    def add_compressed(self, msg) -> bool:
        """sensor_msgs/CompressedImage (jpeg, png) -> stored frame."""
        return self._add(msg, compressed_to_rgb)

    def _add(self, msg, decode) -> bool:
        now = self._clock()
        with self._lock:
            self._received += 1
            self._arrivals.append(now)
            while self._arrivals and now - self._arrivals[0] > self.RATE_WINDOW_S:
                self._arrivals.popleft()
            if self.max_rate_hz:
                # A schedule, not "time since the last kept frame": camera jitter would otherwise skip an extra
                # frame now and then and deliver less than max_rate_hz. The slack absorbs timestamp rounding.
                period = 1.0 / self.max_rate_hz
                if now < self._next_due_s - 0.1 * period:
                    self._dropped += 1
                    return False
                behind = now - self._next_due_s > period  # first frame, or after a gap: restart the schedule
                self._next_due_s = (now if behind else self._next_due_s) + period
        started = time.perf_counter()
        try:
            rgb = decode(msg)
        except ImageConversionError as error:
            with self._lock:
                self._errors += 1
                self._last_error = f"{self.name}: {error}"
            return False
        decode_s = time.perf_counter() - started
        with self._lock:
            self._decoded += 1
            self._ring.append(StampedFrame(rgb, msg.header, self.name, now, decode_s, self._decoded))
        return True

    def latest(self) -> StampedFrame | None:
        with self._lock:
            return self._ring[-1] if self._ring else None

    def recent(self, count: int | None = None) -> list[StampedFrame]:
        """Up to `count` most recent frames, oldest first."""
        with self._lock:
            frames = list(self._ring)
        return frames if count is None else frames[-count:]

    def stats(self) -> CameraStats:
        with self._lock:
            arrivals = list(self._arrivals)
            span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
            rate = (len(arrivals) - 1) / span if span > 0 else 0.0
            return CameraStats(self._received, self._dropped, self._errors, self._last_error, rate)
