"""Doctor checks of ROS 2: the distribution and rmw implementation, the domain and discovery settings that decide
who sees the node, and whether vitron_ros_msgs and vision_msgs import and match this source tree's definitions.

Without ROS 2 the CLI still works (pip-only install); these checks then warn, they do not fail."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re

from .result import FAIL, OK, WARN, CheckResult, DoctorContext

SOURCE_ROS = ("source /opt/ros/<distro>/setup.bash (apt), or pip install -r requirements/ros-kilted.txt and "
              "bash scripts/setup_ros.sh in the source tree (README, Install on a robot)")
BUILD_INTERFACES = ("colcon build --packages-select vitron_ros_msgs vision_msgs, then source install/setup.bash "
                    "(or bash scripts/setup_ros.sh)")
# ROS 2's domain IDs that map to valid DDS ports on every platform (docs.ros.org, "The ROS_DOMAIN_ID")
_SAFE_DOMAINS = "0-101 or 215-232"
_RANGES = ("SUBNET", "LOCALHOST", "OFF", "SYSTEM_DEFAULT")


def _rclpy():
    try:
        import rclpy

        return rclpy, ""
    except Exception as exc:  # noqa: BLE001 - missing, or a ROS install for another Python
        return None, f"{type(exc).__name__}: {exc}"[:300]


def _distribution() -> str:
    if os.environ.get("ROS_DISTRO"):
        return f"{os.environ['ROS_DISTRO']} (ROS_DISTRO)"
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        match = re.fullmatch(r"ros-([a-z]+)-rclpy", name)
        if match:
            return f"{match.group(1)} (the {name} wheel)"
    return "unknown (ROS_DISTRO is not set)"


def check_ros(context: DoctorContext) -> list[CheckResult]:
    rclpy, error = _rclpy()
    if rclpy is None:
        return [CheckResult("ros", WARN, f"ROS 2 is not importable ({error}): the vitron CLI works, the node does "
                            "not", SOURCE_ROS)]
    results = []
    try:
        from rclpy.utilities import get_rmw_implementation_identifier

        rmw = get_rmw_implementation_identifier()
    except Exception as exc:  # noqa: BLE001 - the rmw library named by RMW_IMPLEMENTATION does not load
        chosen = os.environ.get("RMW_IMPLEMENTATION", "the default")
        results.append(CheckResult("ros", FAIL, f"rmw implementation {chosen} does not load: {exc}"[:400],
                                   "install it (pip install ros-kilted-rmw-fastrtps-cpp, or apt "
                                   "ros-<distro>-rmw-fastrtps-cpp) or unset RMW_IMPLEMENTATION"))
        rmw = "?"
    results.append(CheckResult("ros", OK, f"ROS 2 {_distribution()}, rclpy from {os.path.dirname(rclpy.__file__)}, "
                               f"rmw {rmw}"))
    return results + _domain() + _discovery()


def _domain() -> list[CheckResult]:
    raw = os.environ.get("ROS_DOMAIN_ID", "")
    if not raw:
        return [CheckResult("ros", OK, "ROS_DOMAIN_ID unset: domain 0, as every other unset machine")]
    if not raw.isdigit() or not (int(raw) <= 101 or 215 <= int(raw) <= 232):
        return [CheckResult("ros", FAIL, f"ROS_DOMAIN_ID={raw!r} is not a usable domain ({_SAFE_DOMAINS})",
                            f"export ROS_DOMAIN_ID=<{_SAFE_DOMAINS}>, the same on every machine that talks to "
                            "the node")]
    return [CheckResult("ros", OK, f"ROS_DOMAIN_ID={raw}: only nodes with the same domain see this one")]


def _discovery() -> list[CheckResult]:
    results = []
    if os.environ.get("ROS_LOCALHOST_ONLY") == "1":  # Humble's way; Jazzy and later read the range below
        results.append(CheckResult("ros", OK, "ROS_LOCALHOST_ONLY=1: only processes on this machine see the node "
                                   "(on Humble; later distributions go by ROS_AUTOMATIC_DISCOVERY_RANGE)"))
    raw = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "")
    if raw and raw not in _RANGES:
        results.append(CheckResult("ros", FAIL, f"ROS_AUTOMATIC_DISCOVERY_RANGE={raw!r} is not one of {_RANGES}",
                                   "export ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET (or LOCALHOST)"))
    elif raw == "OFF":
        results.append(CheckResult("ros", WARN, "ROS_AUTOMATIC_DISCOVERY_RANGE=OFF: no other process discovers the "
                                   "node, so nothing it publishes is received (unless ROS_STATIC_PEERS names them)",
                                   "export ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET (or LOCALHOST on one machine)"))
    elif raw == "LOCALHOST":
        results.append(CheckResult("ros", OK, "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: processes on this machine "
                                   "see the node; rviz on another machine does not"))
    else:
        results.append(CheckResult("ros", OK, f"ROS_AUTOMATIC_DISCOVERY_RANGE={raw or 'unset (SUBNET)'}: "
                                   "machines on this subnet see the node"))
    return results


_PRIMITIVES = {"bool": "boolean", "byte": "octet", "char": "uint8", "float32": "float", "float64": "double"}


def _field_type(token: str, package: str) -> str:
    """A .msg field type as rosidl's generated Python names it ('float32[]' -> 'sequence<float>')."""
    array = re.fullmatch(r"(.+)\[(<=)?(\d*)\]", token)
    if array:
        inner, bounded, size = array.groups()
        inner = _field_type(inner, package)
        if not size:
            return f"sequence<{inner}>"
        return f"sequence<{inner}, {size}>" if bounded else f"{inner}[{size}]"
    bounded_string = re.fullmatch(r"(w?string)<=(\d+)", token)
    if bounded_string:
        return f"{bounded_string.group(1)}<{bounded_string.group(2)}>"
    if token in _PRIMITIVES:
        return _PRIMITIVES[token]
    if re.fullmatch(r"u?int(8|16|32|64)|w?string", token):
        return token
    if token == "Header":
        return "std_msgs/Header"
    if "/" in token:
        owner, _, name = token.partition("/")
        return f"{owner}/{name.split('/')[-1]}"
    return f"{package}/{token}"


def definition_fields(text: str, package: str) -> dict[str, str]:
    """Field name -> rosidl type of one message definition (constants and comments left out)."""
    fields = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        type_token, _, rest = line.partition(" ")
        if not rest.strip() or re.match(r"\s*[A-Za-z_]\w*\s*=", rest):
            continue  # a constant: TYPE NAME=value
        fields[rest.split()[0]] = _field_type(type_token, package)
    return fields


def generated_class(key: str):
    """'pkg/srv/Query_Request' -> the rclpy-generated class (vitron_ros_msgs.srv.Query.Request)."""
    package, kind, name = key.split("/")
    module = importlib.import_module(f"{package}.{kind}")
    if kind == "msg":
        return getattr(module, name)
    base, _, part = name.rpartition("_")
    return getattr(getattr(module, base), part)


def compare_package(package: str, definitions: dict[str, str]) -> list[str]:
    """What differs between `definitions` ('pkg/msg/Name' -> text) and the classes the installed package generated."""
    problems = []
    for key, text in definitions.items():
        try:
            built = generated_class(key).get_fields_and_field_types()
        except (ImportError, AttributeError) as exc:
            problems.append(f"{key} is not in the built package ({type(exc).__name__})")
            continue
        source = definition_fields(text, package)
        if built != source:
            missing = [f for f in source if f not in built]
            extra = [f for f in built if f not in source]
            changed = [f"{f} {built[f]} (source {source[f]})" for f in source if f in built and built[f] != source[f]]
            parts = [f"missing {missing}" * bool(missing), f"not in the source {extra}" * bool(extra),
                     f"types {changed}" * bool(changed)]
            problems.append(f"{key}: " + "; ".join(p for p in parts if p))
    return problems


def check_interfaces(context: DoctorContext) -> list[CheckResult]:
    from ..ros.interfaces import CHECKOUT_DIRS, INTERFACE_PACKAGE, VISION_PACKAGE, interface_definitions

    if _rclpy()[0] is None:
        return [CheckResult("interfaces", WARN, "not checked: ROS 2 is not importable", SOURCE_ROS)]
    results = []
    for package in (INTERFACE_PACKAGE, VISION_PACKAGE):
        try:
            importlib.import_module(f"{package}.msg")
        except Exception as exc:  # noqa: BLE001 - not built, or built for another Python
            results.append(CheckResult("interfaces", FAIL, f"{package} does not import ({type(exc).__name__}: {exc})"
                                       [:400], BUILD_INTERFACES))
            continue
        checkout = CHECKOUT_DIRS[package]
        where = f"this source tree ({checkout})" if (checkout / "package.xml").is_file() else "its installed share"
        try:
            definitions = interface_definitions(package, prefer_checkout=True)
        except (OSError, ValueError) as exc:
            results.append(CheckResult("interfaces", WARN, f"{package} imports, but no definitions to compare with: "
                                       f"{exc}"[:400], BUILD_INTERFACES))
            continue
        problems = compare_package(package, definitions)
        if problems:
            results.append(CheckResult("interfaces", FAIL, f"{package} was built from other definitions than "
                                       f"{where}: {'; '.join(problems)}"[:800], "rebuild it: " + BUILD_INTERFACES))
        else:
            results.append(CheckResult("interfaces", OK, f"{package}: {len(definitions)} types match {where}"))
    return results
