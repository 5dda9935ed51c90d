"""One worker thread per camera: at most one query runs per camera, a bounded number wait, the rest are refused.

Model calls from different cameras are serialised by the handlers' model lock (one model instance on one device);
the per-camera worker is what keeps a slow query on one camera from piling up unbounded work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class CameraBusyError(RuntimeError):
    """A query was refused because its camera already has the maximum number of queries waiting."""


class QueryWorker:
    def __init__(self, camera: str, max_pending: int = 2):
        if max_pending < 0:
            raise ValueError(f"max_pending must be >= 0, got {max_pending}")
        self.camera = camera
        self.max_pending = max_pending
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vitron-{camera}")
        self._lock = threading.Lock()
        self._outstanding = 0  # running + waiting
        self.refused = 0
        self.completed = 0

    def submit(self, fn: Callable, *args, **kwargs) -> Future:
        """Run `fn` on this camera's thread; raises CameraBusyError when one runs and max_pending already wait."""
        with self._lock:
            if self._outstanding >= 1 + self.max_pending:
                self.refused += 1
                raise CameraBusyError(
                    f"camera {self.camera!r} is busy: one query running and {self.max_pending} waiting "
                    f"(max_pending_queries={self.max_pending}); try again when it has answered"
                )
            self._outstanding += 1
        future = self._executor.submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future) -> None:
        with self._lock:
            self._outstanding -= 1
            self.completed += 1

    @property
    def outstanding(self) -> int:
        with self._lock:
            return self._outstanding

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)
