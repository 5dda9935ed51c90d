"""The vitron_ros_msgs definitions: validated by ROS 2's own rosidl tooling, parsed by rosbags."""

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from rosbags.typesys import get_types_from_idl

from vitron_ros.ros.interfaces import interface_definitions, typestore
from vitron_ros.ros.result_messages import PublishedOutputs

REPO = Path(__file__).resolve().parents[1]
MSG_PACKAGE = REPO / "msg"


def _interface_files():
    return sorted(str(p.relative_to(MSG_PACKAGE)) for kind in ("msg", "srv", "action") for p in (MSG_PACKAGE / kind).glob("*"))


def _require_rosidl():
    if shutil.which("rosidl") is None:
        pytest.skip("rosidl not installed (apt-get install rosidl-tools; scripts/run_tests.sh does as root)")


def test_rosidl_translates_every_interface_and_rosbags_parses_the_idl(tmp_path):
    _require_rosidl()
    files = _interface_files()
    done = subprocess.run(
        ["rosidl", "translate", "--to", "idl", "-o", str(tmp_path), "vitron_ros_msgs", *files],
        cwd=MSG_PACKAGE, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    idl_files = sorted(tmp_path.rglob("*.idl"))
    assert len(idl_files) == len(files)
    parsed = {}
    for idl in idl_files:
        # rosbags' IDL parser does not follow #include; the included types come from the typestore instead.
        text = re.sub(r"^#include .*$", "", idl.read_text(), flags=re.MULTILINE)
        parsed.update(get_types_from_idl(text))
    assert set(parsed) == set(interface_definitions())
    store = typestore()
    for name, (_, fields) in parsed.items():  # rosidl's reading and ours agree field for field
        assert [f[0] for f in fields] == [f[0] for f in store.fielddefs[name][1]], name


def test_rosidl_rejects_a_broken_definition(tmp_path):
    _require_rosidl()
    package = tmp_path / "pkg"
    (package / "msg").mkdir(parents=True)
    (package / "msg" / "Bad.msg").write_text("float32 BadFieldName\n")  # field names must be lower case
    done = subprocess.run(
        ["rosidl", "translate", "--to", "idl", "-o", str(tmp_path / "out"), "pkg", "msg/Bad.msg"],
        cwd=package, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0  # the test above would catch a broken definition of ours


def test_cmake_lists_every_interface_file():
    cmake = (MSG_PACKAGE / "CMakeLists.txt").read_text()
    listed = re.findall(r'"((?:msg|srv|action)/\w+\.\w+)"', cmake)
    assert sorted(listed) == _interface_files()
    assert "<member_of_group>rosidl_interface_packages</member_of_group>" in (MSG_PACKAGE / "package.xml").read_text()


def test_launch_file_declares_the_documented_arguments_and_runs_the_installed_node():
    tree = ast.parse((REPO / "launch" / "vitron.launch.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    declared = {c.args[0].value for c in calls if c.func.id == "DeclareLaunchArgument"}
    assert {"namespace", "params_file", "profile", "autostart", "image", "camera_info", "device"} <= declared
    node = next(c for c in calls if c.func.id == "LifecycleNode")
    keywords = {k.arg: k.value for k in node.keywords}
    assert keywords["executable"].value == "vitron_node" and keywords["package"].value == "vitron_ros"
    setup = (REPO / "setup.py").read_text()
    assert '"vitron_node = vitron_ros.ros.node:main"' in setup


def test_rviz_config_shows_the_nodes_overlays_and_markers():
    rviz = yaml.safe_load((REPO / "config" / "vitron.rviz").read_text())
    displays = [(d["Class"], d["Topic"]["Value"]) for d in rviz["Visualization Manager"]["Displays"] if "Topic" in d]
    answer_outputs = {f"/vitron/{name}" for name in ("answer", "masks", "detections", "markers", "overlay",
                                                       "detections_3d", "detections_3d_target")}
    outputs = answer_outputs | {"/vitron/tracks", "/vitron/tracks_overlay", "/vitron/tracks_markers"}
    images = [topic for kind, topic in displays if kind == "rviz_default_plugins/Image"]
    assert images == ["/vitron/overlay", "/vitron/tracks_overlay"]
    assert ("rviz_default_plugins/MarkerArray", "/vitron/markers") in displays
    assert ("rviz_default_plugins/MarkerArray", "/vitron/tracks_markers") in displays
    assert {topic for _, topic in displays} <= outputs
    fixed = {f.name for f in PublishedOutputs.__dataclass_fields__.values()} - {"extra"}
    assert fixed == {t.rsplit("/", 1)[1] for t in answer_outputs}


def test_node_module_names_only_what_exists():
    """node.py needs rclpy to import; here its own imports and the handler methods it calls are checked."""
    import importlib

    from vitron_ros.ros.handlers import VitronHandlers

    source = (REPO / "vitron_ros" / "ros" / "node.py").read_text()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            module = importlib.import_module(("vitron_ros.ros." if node.level == 1 else "vitron_ros.") + node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module}.{alias.name}"
    called = set(re.findall(r"self\.handlers\.(\w+)", source))
    assert called and all(hasattr(VitronHandlers, name) or name in ("pipeline", "cameras", "tracking", "lifter") for name in called)
