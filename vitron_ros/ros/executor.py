"""The node's executor: rclpy's MultiThreadedExecutor made safe for a node that must never die.

rclpy leaves three holes that end a node in the field:
- an exception raised in any callback comes out of `spin_once` and ends the process;
- a message or request whose conversion to Python raises inside the take leaves the entity marked as in use, so it is
  never waited on again and the topic or service goes silent for good (read from rclpy's executor; invalid UTF-8 is
  not such a case: rclpy decodes it with replacement characters, as the node fuzz test shows);
- destroying publishers, services and action servers from a worker thread races the wait set that the spin thread
  is building (`InvalidHandle: cannot use Destroyable because destruction was requested`, rclpy issues 1142, 1206,
  1355).

`ContainedExecutor` logs and counts the first two and keeps spinning, and runs `call_on_spin_thread` work on the
spin thread between waits, where no wait set is being built: the node destroys its entities there.
"""

from __future__ import annotations

import threading
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, ShutdownException


class ContainedExecutor(MultiThreadedExecutor):
    def __init__(self, num_threads: int = 8, on_error: Callable[[str], None] = print, **kwargs):
        super().__init__(num_threads=num_threads, **kwargs)
        self.on_error = on_error  # gets a one-line summary plus the traceback of every contained exception
        self.errors = 0
        self._calls: deque[tuple[Callable[[], object], Future]] = deque()
        self._spin_thread: threading.Thread | None = None

    def spin_until(self, stop: threading.Event, period_s: float = 0.1) -> None:
        """Spin until `stop` is set or the context shuts down; nothing a callback raises ends it."""
        self._spin_thread = threading.current_thread()
        try:
            while not stop.is_set() and self.context.ok():
                self.spin_once(timeout_sec=period_s)
        finally:
            self._run_calls()  # work handed over while stopping still runs
            self._spin_thread = None

    def spin_once(self, timeout_sec: float | None = None) -> None:
        self._run_calls()
        try:
            super().spin_once(timeout_sec)
        except (KeyboardInterrupt, ExternalShutdownException, ShutdownException):
            raise
        except Exception as error:  # noqa: BLE001 - contained: logged with its traceback, counted, spin goes on
            self._report("callback raised", error)

    def call_on_spin_thread(self, fn: Callable[[], object]) -> Future:
        """Run `fn` on the spin thread before its next wait (at once when called from it, or when not spinning)."""
        future: Future = Future()
        if self._spin_thread is None or threading.current_thread() is self._spin_thread:
            _run_into(fn, future)
            return future
        self._calls.append((fn, future))
        self.wake()
        return future

    def _run_calls(self) -> None:
        while self._calls:
            fn, future = self._calls.popleft()
            _run_into(fn, future)

    # rclpy takes a message or request inside the worker's handler; if that raises, the entity stays marked as
    # in use and is never waited on again. Taking inside a guard keeps it alive (the bad message is dropped).
    # (Names are read only on failure: reading one from an entity being destroyed raises InvalidHandle itself.)
    def _take_subscription(self, sub):
        return self._guarded_take(super()._take_subscription, sub, lambda: f"a message on {sub.topic_name}")

    def _take_service(self, srv):
        return self._guarded_take(super()._take_service, srv, lambda: f"a request to {srv.srv_name}")

    def _guarded_take(self, take, entity, what: Callable[[], str]):
        try:
            return take(entity)
        except Exception as error:  # noqa: BLE001
            try:
                name = what()
            except Exception:  # noqa: BLE001 - destroyed meanwhile
                name = "a message or request"
            self._report(f"dropped {name} that could not be read", error)
            return None

    def _report(self, what: str, error: BaseException) -> None:
        self.errors += 1
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.on_error(f"{what}: {type(error).__name__}: {error}\n{trace}")


def _run_into(fn: Callable[[], object], future: Future) -> None:
    try:
        future.set_result(fn())
    except BaseException as error:  # noqa: BLE001 - handed to whoever waits on the future
        future.set_exception(error)
