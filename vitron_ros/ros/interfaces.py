"""Message types without a ROS 2 runtime: a rosbags typestore holding this package's interfaces.

The node builds messages through rclpy's generated classes; tests, `vitron replay` and the benches build the very
same definitions through rosbags (ROS 2 Humble's standard messages plus `vitron_ros_msgs` read from its own .msg,
.srv and .action files, plus vision_msgs, which rosbags does not ship). Code that builds messages takes a
`MessageFactory`, so one handler serves both.
"""

from __future__ import annotations

import array
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

INTERFACE_PACKAGE = "vitron_ros_msgs"

VISION_PACKAGE = "vision_msgs"
CHECKOUT = Path(__file__).resolve().parents[2]
# Where each interface package's definitions live in a source checkout. vision_msgs 4.1.1's upstream files are kept
# in third_party/ (ROS 2 from the package registry does not ship vision_msgs), so bags written here decode as the
# real type and the node's ROS 2 build uses the very same definitions.
CHECKOUT_DIRS = {INTERFACE_PACKAGE: CHECKOUT / "msg", VISION_PACKAGE: CHECKOUT / "third_party" / VISION_PACKAGE}


class MessageFactory(Protocol):
    def new(self, typename: str, **fields: Any) -> Any:
        """A message of `typename` ('pkg/msg/Name') with `fields` set and every other field at its default."""


def interface_dir(package: str = INTERFACE_PACKAGE, prefer_checkout: bool = False) -> Path:
    """Folder of an interface package's definitions: installed (ament index) first, else this source checkout
    (`prefer_checkout`: the other way round, to check what is installed against the source)."""
    checkout = CHECKOUT_DIRS[package]
    if prefer_checkout and (checkout / "package.xml").is_file():
        return checkout
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        share = Path(prefix) / "share" / package
        if (share / "msg").is_dir():
            return share
    if (checkout / "package.xml").is_file():
        return checkout
    raise FileNotFoundError(
        f"cannot find the {package} definitions: not under $AMENT_PREFIX_PATH/share/{package} and not at "
        f"{checkout}; build it with `bash scripts/setup_ros.sh` (or colcon) or run from a source checkout"
    )


def interface_definitions(package: str = INTERFACE_PACKAGE, prefer_checkout: bool = False) -> dict[str, str]:
    """'vitron_ros_msgs/msg/Answer' -> msg text; services and actions split into their parts
    (Query_Request / Query_Response, Ask_Goal / Ask_Result / Ask_Feedback), as rosidl names them."""
    root = interface_dir(package, prefer_checkout)
    parts = {".msg": ("",), ".srv": ("_Request", "_Response"), ".action": ("_Goal", "_Result", "_Feedback")}
    definitions = {}
    for kind, suffixes in parts.items():
        for path in sorted((root / kind[1:]).glob(f"*{kind}")):
            sections = path.read_text().split("\n---\n")
            if len(sections) != len(suffixes):
                raise ValueError(f"{path}: expected {len(suffixes)} sections separated by '---', got {len(sections)}")
            for suffix, text in zip(suffixes, sections, strict=True):
                definitions[f"{package}/{kind[1:]}/{path.stem}{suffix}"] = text
    return definitions


@lru_cache(maxsize=1)
def typestore():
    """ROS 2 Humble's standard types + vision_msgs + vitron_ros_msgs, as a rosbags Typestore."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    types = {}
    for name, text in {**interface_definitions(VISION_PACKAGE), **interface_definitions()}.items():
        # rosbags reads every definition as a msg (it would file Query_Request under 'srv/msg/'), so parse each
        # part as pkg/msg/Name, which also resolves its unqualified field types, and file it under its own name.
        package, _, stem = name.split("/")
        (fielddefs,) = get_types_from_msg(text, f"{package}/msg/{stem}").values()
        types[name] = fielddefs
    store.register(types)
    return store


class TypestoreFactory:
    """Builds rosbags dataclass messages with defaults filled in (rosbags requires every field)."""

    def __init__(self, store=None):
        self.store = store if store is not None else typestore()

    def new(self, typename: str, **fields: Any) -> Any:
        if typename not in self.store.types:
            raise KeyError(f"unknown message type {typename!r}")
        _, fielddefs = self.store.fielddefs[typename]
        names = {name for name, _ in fielddefs}
        unknown = set(fields) - names
        if unknown:
            raise TypeError(f"{typename} has no field(s) {sorted(unknown)}; fields: {sorted(names)}")
        values = {name: fields[name] if name in fields else self._default(desc) for name, desc in fielddefs}
        return self.store.types[typename](**values)

    def _default(self, desc):
        from rosbags.typesys.base import Nodetype

        kind, detail = desc
        if kind == Nodetype.NAME:
            return self.new(detail)
        if kind == Nodetype.BASE:
            base = detail[0]
            return "" if base in ("string", "wstring") else (False if base == "bool" else 0)
        (item_kind, item_detail), length = detail
        if item_kind == Nodetype.BASE and item_detail[0] not in ("string", "wstring"):
            dtype = np.uint8 if item_detail[0] in ("byte", "char", "octet") else np.dtype(_NUMPY[item_detail[0]])
            return np.zeros(length if kind == Nodetype.ARRAY else 0, dtype)
        if kind == Nodetype.ARRAY:
            return [self._default((item_kind, item_detail)) for _ in range(length)]
        return []


_NUMPY = {
    "bool": np.bool_, "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16,
    "int32": np.int32, "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64,
    "float32": np.float32, "float64": np.float64,
}  # fmt: skip


def rclpy_type(typename: str):
    """'pkg/msg/Name' -> rclpy's generated class; services' and actions' parts ('pkg/srv/Query_Request',
    'pkg/action/Track_Feedback') are attributes of their type (`Query.Request`, `Track.Feedback`).

    What rosidl_runtime_py's get_message does, which is not installable everywhere ROS 2 is (the wheels lack it).
    """
    import importlib

    try:
        package, kind, name = typename.split("/")
    except ValueError:
        raise ValueError(f"message type {typename!r} is not 'package/kind/Name'") from None
    module = importlib.import_module(f"{package}.{kind}")
    parts = {"srv": ("Request", "Response", "Event"), "action": ("Goal", "Result", "Feedback")}.get(kind, ())
    base, _, part = name.rpartition("_")
    if part in parts and hasattr(module, base):
        return getattr(getattr(module, base), part)
    try:
        return getattr(module, name)
    except AttributeError:
        raise ValueError(f"{package}.{kind} has no type {name!r}") from None


class RclpyFactory:
    """Builds rclpy messages (used by the node; needs a ROS 2 environment)."""

    def new(self, typename: str, **fields: Any) -> Any:
        msg = rclpy_type(typename)()
        field_types = msg.get_fields_and_field_types()
        for name, value in fields.items():
            if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 1:
                # rclpy's uint8[] setter checks every element of a list; array.array is taken as-is.
                packed = array.array("B")
                packed.frombytes(np.ascontiguousarray(value).data)  # one copy, not two (tobytes, then array)
                value = packed
            elif field_types.get(name) == "octet" and isinstance(value, int):
                value = bytes([value])  # msg `byte` fields are bytes in rclpy, ints in rosbags
            setattr(msg, name, value)
        return msg


def header(factory: MessageFactory, stamp_ns: int = 0, frame_id: str = ""):
    """A std_msgs/Header for a stamp given in nanoseconds."""
    stamp = factory.new("builtin_interfaces/msg/Time", sec=int(stamp_ns // 10**9), nanosec=int(stamp_ns % 10**9))
    return factory.new("std_msgs/msg/Header", stamp=stamp, frame_id=frame_id)


def stamp_ns(header_msg) -> int:
    return int(header_msg.stamp.sec) * 10**9 + int(header_msg.stamp.nanosec)
