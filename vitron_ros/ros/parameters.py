"""vitron_node's ROS parameters: one flat, typed, validated layer over the profile config.

The node declares exactly these fields (with their descriptions as ParameterDescriptors); config/vitron.yaml
sets them. Checked here, without ROS, so a bad value is refused on configure with a message naming it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..core.errors import VitronInputError

RELIABILITY = ("best_effort", "reliable")
TRANSPORTS = ("raw", "compressed")
PRECISIONS = ("", "float16", "bfloat16", "float32")
BACKENDS = ("", "torch", "onnxruntime", "tensorrt")
MASK_FORMATS = ("full", "cropped")


def _param(default, description: str):
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"description": description})
    return field(default=default, metadata={"description": description})


@dataclass(frozen=True)
class NodeParameters:
    config_file: str = _param("", "profiles YAML; empty: the packaged config/profiles.yaml (or $VITRON_PROFILES)")
    profile: str = _param("default", "model profile to load on activate (see `vitron models list`)")
    device: str = _param("auto", "'auto' (cuda when available, else cpu), 'cpu' or 'cuda[:N]'")
    precision: str = _param("", "dtype of every model on CUDA: float16, bfloat16 or float32 (CPU: float32); "
                                "empty: each profile section's own")
    backend: str = _param("", "encoders' backend: torch, onnxruntime or tensorrt (falling back visibly where it "
                              "cannot run); empty: the profile's")
    memory_budget_mb: int = _param(-1, "weights kept loaded at once; the least recently used specialist is "
                                       "unloaded to make room; 0: no limit; -1: the profile's")
    preload_specialists: bool = _param(True, "load every specialist on activate (as many as the budget holds); "
                                             "false: each on first use")
    image_topics: list = _param(["image"], "image topics, one per camera (remap or namespace them)")
    camera_names: list = _param([], "a name per image topic; empty: each topic's namespace (camera/image -> camera)")
    transport: str = _param("raw", "'raw' (sensor_msgs/Image) or 'compressed' (<topic>/compressed, jpeg or png)")
    camera_info: bool = _param(True, "subscribe to <camera namespace>/camera_info and report it in diagnostics")
    depth_topics: list = _param([], "depth images aligned to each camera's images (16UC1 mm or 32FC1 m, e.g. "
                                    "camera/aligned_depth_to_color/image_raw), one per image topic, '' for none; "
                                    "their camera_info beside them. Masks and tracks get 3D; empty: no 3D")
    depth_stamp_tolerance_s: float = _param(0.02, "a depth frame is used for an image only if their stamps differ "
                                                  "by at most this (the nearest wins; never by arrival order)")
    depth_wait_s: float = _param(0.1, "how long an image's 3D may wait for its depth frame to arrive")
    target_frame: str = _param("", "also publish 3D in this frame (~/detections_3d_target, ~/tracks_3d_target), "
                                    "TF looked up at the image's stamp; needs tf2_ros; empty: optical frame only")
    reliability: str = _param("best_effort", "image QoS reliability: best_effort (sensor data) or reliable")
    qos_depth: int = _param(1, "image QoS history depth (keep last)")
    max_rate_hz: float = _param(0.0, "frames arriving faster than this are dropped before decoding; 0: keep all")
    clip_length: int = _param(16, "recent frames kept per camera: the clip a VideoQuery goal asks about")
    video_frames: int = _param(8, "frames the video encoder samples from that clip, unless the goal says")
    max_pending_queries: int = _param(2, "queries that may wait per camera while one runs; more are refused")
    overlay: bool = _param(True, "publish ~/overlay (masks drawn on the image) for rviz")
    mask_format: str = _param("full", "'full': masks are full-frame mono8 images; 'cropped': only each mask's box "
                                      "(mask_cropped set; 2 MB a mask at 1080p full-frame)")
    diagnostics_period_s: float = _param(1.0, "how often /diagnostics is published")
    autostart: bool = _param(False, "configure and activate on start-up, without a lifecycle manager")

    def __post_init__(self):
        checks = [  # in order, each evaluated only once those before it hold
            (lambda: self.reliability in RELIABILITY, "reliability", f"one of {RELIABILITY}"),
            (lambda: self.transport in TRANSPORTS, "transport", f"one of {TRANSPORTS}"),
            (lambda: self.precision in PRECISIONS, "precision", f"one of {PRECISIONS}"),
            (lambda: self.backend in BACKENDS, "backend", f"one of {BACKENDS}"),
            (lambda: self.memory_budget_mb >= -1, "memory_budget_mb", ">= -1"),
            (lambda: self.mask_format in MASK_FORMATS, "mask_format", f"one of {MASK_FORMATS}"),
            (lambda: bool(self.image_topics) and all(isinstance(t, str) and t for t in self.image_topics),
             "image_topics", "a non-empty list of topic names"),
            (lambda: not self.camera_names or len(self.camera_names) == len(self.image_topics), "camera_names",
             f"empty or one name per image topic ({len(self.image_topics)})"),
            (lambda: len(set(self.cameras)) == len(self.cameras), "camera_names", "distinct camera names"),
            (lambda: not any(self.depth_topics) or len(self.depth_topics) == len(self.image_topics), "depth_topics",
             f"empty or one entry per image topic ({len(self.image_topics)}; '' for a camera without depth)"),
            (lambda: self.depth_stamp_tolerance_s >= 0, "depth_stamp_tolerance_s", ">= 0"),
            (lambda: self.depth_wait_s >= 0, "depth_wait_s", ">= 0"),
            (lambda: self.qos_depth >= 1, "qos_depth", ">= 1"),
            (lambda: self.max_rate_hz >= 0, "max_rate_hz", ">= 0"),
            (lambda: self.clip_length >= 1, "clip_length", ">= 1"),
            (lambda: self.video_frames >= 1, "video_frames", ">= 1"),
            (lambda: self.max_pending_queries >= 0, "max_pending_queries", ">= 0"),
            (lambda: self.diagnostics_period_s > 0, "diagnostics_period_s", "> 0"),
            (lambda: bool(self.profile), "profile", "a profile name"),
        ]  # fmt: skip
        for ok, name, expected in checks:
            if not ok():
                raise VitronInputError(f"parameter {name}={getattr(self, name)!r}: expected {expected}")

    @property
    def cameras(self) -> dict[str, str]:
        """camera name -> image topic."""
        names = self.camera_names or [camera_name_for(t) for t in self.image_topics]
        return dict(zip(names, self.image_topics, strict=True))

    @property
    def camera_depth_topics(self) -> dict[str, str]:
        """camera name -> its aligned depth topic, for the cameras that have one."""
        return {name: topic for name, topic in zip(self.cameras, self.depth_topics, strict=False) if topic}

    def apply_to(self, profile):
        """The profile with this node's precision, backend, memory budget and preload choice."""
        runtime = profile.runtime
        changes = {"preload": self.preload_specialists}
        if self.precision:
            changes["precision"] = self.precision
        if self.backend:
            changes["backend"] = self.backend
        if self.memory_budget_mb >= 0:
            changes["memory_budget_mb"] = self.memory_budget_mb
        return dataclasses.replace(profile, runtime=dataclasses.replace(runtime, **changes))

    @classmethod
    def from_dict(cls, values: dict) -> NodeParameters:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise VitronInputError(f"unknown parameter(s) {sorted(unknown)}; known: {sorted(known)}")
        typed = {}
        for name, value in values.items():
            default = known[name].default if known[name].default is not dataclasses.MISSING else []
            typed[name] = _coerce(name, value, default)
        return cls(**typed)

    @staticmethod
    def descriptions() -> dict[str, str]:
        return {f.name: f.metadata["description"] for f in dataclasses.fields(NodeParameters)}


def _coerce(name: str, value, default):
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # YAML "1" for a float parameter
    if kind is list:
        if not isinstance(value, (list, tuple)):
            raise VitronInputError(f"parameter {name}: expected a list, got {value!r}")
        return [str(v) for v in value]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise VitronInputError(f"parameter {name}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def camera_name_for(topic: str) -> str:
    """'front/image_raw' -> 'front'; 'image' -> 'image'."""
    parts = [p for p in topic.strip("/").split("/") if p]
    return parts[-2] if len(parts) > 1 else (parts[0] if parts else topic)


def camera_info_topic(image_topic: str) -> str:
    """The camera_info beside an image topic, as image_transport pairs them."""
    parent = image_topic.rstrip("/").rsplit("/", 1)[0] if "/" in image_topic.strip("/") else ""
    return f"{parent}/camera_info" if parent else "camera_info"
