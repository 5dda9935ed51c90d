"""/diagnostics for the node: per-stage latency, input rate, dropped frames, conversion errors, model memory."""

from __future__ import annotations

import threading
from collections import Counter, deque

import numpy as np

from .frame_buffer import CameraStats
from .interfaces import MessageFactory

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels (byte constants)


class LatencyWindow:
    """Recent per-stage latencies (seconds) of answered queries, summarised as median and p95 in ms."""

    def __init__(self, size: int = 50):
        self._lock = threading.Lock()
        self._timings: deque[dict[str, float]] = deque(maxlen=size)

    def add(self, timings: dict[str, float]) -> None:
        with self._lock:
            self._timings.append(dict(timings))

    def summary(self) -> dict[str, tuple[float, float]]:
        """stage -> (median ms, p95 ms) over the window."""
        with self._lock:
            window = list(self._timings)
        stages = sorted({stage for timings in window for stage in timings})
        summary = {}
        for stage in stages:
            values = np.asarray([t[stage] for t in window if stage in t]) * 1000.0
            summary[stage] = (float(np.median(values)), float(np.percentile(values, 95)))
        return summary


class NodeHealth:
    """What went wrong in the node without stopping it: callbacks that raised, requests answered with an error
    (by kind), incompatible QoS seen on a topic. Thread-safe; shown in /diagnostics."""

    def __init__(self):
        self._lock = threading.Lock()
        self.callback_errors = 0
        self.last_callback_error = ""
        self.request_errors: Counter[str] = Counter()
        self.last_request_error = ""
        self.qos_events: Counter[str] = Counter()
        self.last_qos_problem = ""

    def callback_failed(self, message: str) -> None:
        with self._lock:
            self.callback_errors += 1
            self.last_callback_error = message[:500]

    def request_failed(self, kind: str, message: str) -> None:
        with self._lock:
            self.request_errors[kind] += 1
            self.last_request_error = f"{kind}: {message[:500]}"

    def qos_incompatible(self, topic: str, message: str) -> None:
        with self._lock:
            self.qos_events[topic] += 1
            self.last_qos_problem = message

    def snapshot(self, executor_errors: int = 0) -> dict[str, str]:
        """Key -> value for the node's DiagnosticStatus."""
        with self._lock:
            values = {
                "callback_errors": str(self.callback_errors + executor_errors),
                "last_callback_error": self.last_callback_error,
                "requests_failed": str(sum(self.request_errors.values())),
                "last_request_error": self.last_request_error,
                "qos_incompatible_events": str(sum(self.qos_events.values())),
                "last_qos_problem": self.last_qos_problem,
            }
            values.update({f"requests_failed_{kind}": str(n) for kind, n in sorted(self.request_errors.items())})
            values.update({f"qos_incompatible {topic}": str(n) for topic, n in sorted(self.qos_events.items())})
            return values


def runtime_status(pipeline, loading: str = "") -> dict[str, str]:
    """The pipeline's runtime report (memory, loaded specialists, backends, activity); while none is loaded, what the
    load is doing (`loading`: its last progress line)."""
    if pipeline is None:
        return {"activity": loading} if loading else {}
    return pipeline.runtime_status()


def camera_info_summary(info, image_hw: tuple[int, int] | None) -> tuple[int, str]:
    """(level, text) for a camera's latest sensor_msgs/CameraInfo against its latest image size."""
    if info is None:
        return WARN, "no camera_info received"
    size = f"{info.width}x{info.height}"
    if image_hw is not None and (int(info.height), int(info.width)) != tuple(image_hw):
        return WARN, f"camera_info is {size} but images are {image_hw[1]}x{image_hw[0]}"
    return OK, f"{size}, frame {info.header.frame_id!r}"


def _key_values(factory: MessageFactory, values: dict[str, object]):
    return [factory.new("diagnostic_msgs/msg/KeyValue", key=k, value=str(v)) for k, v in values.items()]


def diagnostics_msg(
    factory: MessageFactory,
    header,
    node_name: str,
    cameras: dict[str, CameraStats],
    latency: dict[str, tuple[float, float]],
    runtime: dict[str, str],
    models_loaded: bool,
    refused_queries: dict[str, int],
    camera_infos: dict[str, tuple[int, str]] | None = None,
    health: dict[str, str] | None = None,
    loops: dict | None = None,
    depth: dict[str, tuple[bool, str]] | None = None,
    environment: list | None = None,
):
    """One DiagnosticStatus for the models, one per camera and, with `health` (NodeHealth.snapshot()), one for the
    node's contained failures. `camera_infos`: camera -> camera_info_summary(); `runtime`: runtime_status();
    `depth`: camera -> (fine, text) of its 3D (DepthLifter.status), None when the node has no depth at all;
    `environment`: the doctor's results at configure (vitron_ros.doctor.CheckResult), one status for them all."""
    model_values = {"loaded": models_loaded, "model_memory_mb": "0.0", **runtime}
    activity = runtime.get("activity", "idle")
    load_errors = [v for k, v in runtime.items() if k.endswith("_load_error")]
    if not models_loaded and activity != "idle":  # activating: loading, exporting, building engines
        level, message = OK, f"loading models: {activity}"
    elif not models_loaded:
        level, message = WARN, "models not loaded (node inactive)"
    elif activity != "idle":  # a load, an ONNX export or a TensorRT engine build under way: minutes, not silence
        level, message = OK, activity
    elif load_errors:
        level, message = WARN, load_errors[-1]
    else:
        level, message = OK, "models loaded"
    for stage, (median, p95) in latency.items():
        model_values[f"{stage}_ms_median"] = f"{median:.2f}"
        model_values[f"{stage}_ms_p95"] = f"{p95:.2f}"
    statuses = [
        factory.new(
            "diagnostic_msgs/msg/DiagnosticStatus",
            level=level,
            name=f"{node_name}: models",
            message=message,
            hardware_id=node_name,
            values=_key_values(factory, model_values),
        )
    ]
    camera_infos = camera_infos or {}
    for name, stats in cameras.items():
        info_level, info_text = camera_infos.get(name, (OK, "not subscribed"))
        if stats.conversion_errors:
            level, message = WARN, stats.last_error
        elif info_level != OK:
            level, message = info_level, info_text
        elif stats.received == 0:
            level, message = WARN, "no frames received"
        else:
            level, message = OK, f"{stats.input_rate_hz:.1f} Hz"
        depth_fine, depth_text = (depth or {}).get(name, (True, "no depth_topics: no 3D published"))
        if level == OK and not depth_fine:  # a camera that publishes but gets no 3D says why
            level, message = WARN, depth_text
        values = {
            "input_rate_hz": f"{stats.input_rate_hz:.2f}",
            "frames_received": stats.received,
            "frames_dropped_rate_limit": stats.dropped_rate_limit,
            "conversion_errors": stats.conversion_errors,
            "last_error": stats.last_error,
            "queries_refused_busy": refused_queries.get(name, 0),
            "camera_info": info_text,
            "depth": depth_text,
        }
        loop = (loops or {}).get(name)  # the camera's TrackingLoop.stats()
        if loop is not None:
            values.update({
                "frames_tracked": loop.processed,
                "frames_skipped_latest_wins": loop.skipped,
                "tracking_frame_ms_median": f"{loop.frame_ms:.2f}",
                "tracking_ros_ms_median": f"{loop.ros_ms:.2f}",
                "tracking_published_image_bytes": loop.published_bytes,
            })  # fmt: skip
        statuses.append(
            factory.new(
                "diagnostic_msgs/msg/DiagnosticStatus",
                level=level,
                name=f"{node_name}: camera {name}",
                message=message,
                hardware_id=name,
                values=_key_values(factory, values),
            )
        )
    if health is not None:
        qos_problem = int(health.get("qos_incompatible_events", "0")) > 0
        failing = int(health.get("callback_errors", "0")) > 0
        message = (health["last_qos_problem"] if qos_problem else
                   f"{health['callback_errors']} callback error(s) contained; last: {health['last_callback_error']}"
                   if failing else "no contained errors")
        statuses.append(
            factory.new(
                "diagnostic_msgs/msg/DiagnosticStatus",
                level=WARN if qos_problem or failing else OK,
                name=f"{node_name}: node",
                message=message,
                hardware_id=node_name,
                values=_key_values(factory, health),
            )
        )
    if environment:
        statuses.append(environment_status(factory, node_name, environment))
    return factory.new("diagnostic_msgs/msg/DiagnosticArray", header=header, status=statuses)


def environment_status(factory: MessageFactory, node_name: str, results: list):
    """The doctor's checks as one DiagnosticStatus: ERROR when one failed, its message the first failure (or warning)
    with its fix; one key per finding ("checkpoints 2": "fail: ... | fix: ...")."""
    failures = [r for r in results if r.status == "fail"]
    warnings = [r for r in results if r.status == "warn"]
    first = (failures or warnings or [None])[0]
    level = ERROR if failures else WARN if warnings else OK
    message = (f"{len(failures)} check(s) failed, {len(warnings)} warning(s); {first.check}: {first.detail} "
               f"(fix: {first.fix})" if first else f"{len(results)} checks passed (vitron doctor)")
    values, seen = {}, Counter()
    for r in results:
        seen[r.check] += 1
        values[f"{r.check} {seen[r.check]}"] = f"{r.status}: {r.detail}" + (f" | fix: {r.fix}" if r.fix else "")
    return factory.new("diagnostic_msgs/msg/DiagnosticStatus", level=level, name=f"{node_name}: environment",
                       message=message[:1000], hardware_id=node_name, values=_key_values(factory, values))
