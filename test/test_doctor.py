"""`vitron doctor`: a full report on this machine, and each check's failing path (a missing or corrupt checkpoint,
a missing or stale interface package, ROS 2 settings that hide the node, a profile that does not load)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vitron_ros.cli import main
from vitron_ros.doctor import CHECKS, FAIL, OK, WARN, CheckResult, doctor_context, run_checks

from .conftest import REPO
from .ros_harness import require_ros


def _doctor_json(capsys, *args) -> tuple[int, list[dict]]:
    code = main(["doctor", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def _profiles_file(tmp_path: Path, edit) -> str:
    profiles = yaml.safe_load((REPO / "config" / "profiles.yaml").read_text())
    edit(profiles["profiles"])
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump(profiles))
    return str(path)


def test_the_report_on_this_machine_runs_every_check_and_passes_on_the_tiny_profile(capsys, tiny_profile):
    require_ros()
    code, results = _doctor_json(capsys, "--profile", "tiny")
    assert {r["check"] for r in results} == set(CHECKS)
    assert code == 0, [r for r in results if r["status"] == FAIL]
    by_check = {r["check"]: r for r in results}
    assert "paired with torch" in by_check["torchvision"]["detail"] and "NMS runs" in by_check["torchvision"]["detail"]
    assert "transformers" in by_check["libraries"]["detail"] and "segment-anything" in by_check["libraries"]["detail"]
    interfaces = [r["detail"] for r in results if r["check"] == "interfaces"]
    assert any(d.startswith("vitron_ros_msgs:") and "match this source tree" in d for d in interfaces)
    assert any(d.startswith("vision_msgs:") and "match this source tree" in d for d in interfaces)
    checkpoints = [r for r in results if r["check"] == "checkpoints"]
    assert len(checkpoints) >= 5 and all(r["status"] == OK for r in checkpoints)
    # the text report: one line per finding and a count
    assert main(["doctor", "--profile", "tiny"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith("0 failure(s)")


def test_missing_and_corrupt_checkpoints_fail_with_the_command_that_fetches_them(capsys, tmp_path, tiny_profile):
    good = tmp_path / "sam_vit_b.pth"
    good.write_bytes(b"weights")
    import hashlib

    digest = hashlib.sha256(b"weights").hexdigest()
    named_right = tmp_path / f"sam_vit_b-{digest[:8]}.pth"
    named_right.write_bytes(b"weights")
    named_wrong = tmp_path / "sam_vit_b-01ec64.pth"  # a half download keeps the published name
    named_wrong.write_bytes(b"half")

    def edit(profiles, checkpoint):
        profiles["default"]["segmenter"]["checkpoint"] = str(checkpoint)

    for checkpoint, status, words in ((named_right, OK, f"SHA-256 matches its name ({digest[:8]})"),
                                      (named_wrong, FAIL, "does not start with 01ec64"),
                                      (tmp_path / "absent.pth", FAIL, "absent.pth does not exist")):
        profiles = _profiles_file(tmp_path, lambda p, c=checkpoint: edit(p, c))
        code, results = _doctor_json(capsys, "--profile", "default", "--profiles-file", profiles)
        (segmenter,) = [r for r in results if r["detail"].startswith("segmenter.checkpoint")]
        assert segmenter["status"] == status and words in segmenter["detail"], segmenter
        assert code == 1  # the default profile's hub models are not on this machine either
        if status == FAIL:
            assert "vitron models fetch --profile default" in segmenter["fix"]
    hub = [r for r in results if r["detail"].startswith("tracker.model")][0]
    assert hub["status"] == FAIL and "not in the local Hugging Face cache" in hub["detail"]
    # a built profile names the command that builds it
    tiny = _profiles_file(tmp_path, lambda p: p["tiny"]["tracker"].update(model=str(tmp_path / "gone")))
    code, results = _doctor_json(capsys, "--profile", "tiny", "--profiles-file", tiny)
    (tracker,) = [r for r in results if r["detail"].startswith("tracker.model")]
    assert code == 1 and "vitron-lab build-tiny" in tracker["fix"]


def test_a_profile_that_does_not_load_is_a_failure_not_a_crash(capsys):
    code, results = _doctor_json(capsys, "--profile", "no_such_profile")
    (checkpoints,) = [r for r in results if r["check"] == "checkpoints"]
    assert code == 1 and "no_such_profile" in checkpoints["detail"] and checkpoints["status"] == FAIL


def test_ros_settings_that_hide_the_node_are_reported(monkeypatch):
    require_ros()
    context = doctor_context("tiny")
    monkeypatch.setenv("ROS_DOMAIN_ID", "150")
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "OFF")
    results = run_checks(context, ["ros"])
    domain = [r for r in results if "ROS_DOMAIN_ID" in r.detail][0]
    assert domain.status == FAIL and "0-101 or 215-232" in domain.detail and domain.fix
    off = [r for r in results if "DISCOVERY_RANGE" in r.detail][0]
    assert off.status == WARN and "nothing it publishes is received" in off.detail
    monkeypatch.setenv("ROS_DOMAIN_ID", "42")
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "EVERYWHERE")
    results = run_checks(context, ["ros"])
    assert [r.status for r in results if "ROS_DOMAIN_ID" in r.detail] == [OK]
    assert [r.status for r in results if "DISCOVERY_RANGE" in r.detail] == [FAIL]


def test_a_missing_interface_package_fails_with_the_build_command():
    """In a process where vitron_ros_msgs cannot be imported, as on a robot that never built it."""
    require_ros()
    code = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'vitron_ros_msgs': raise ImportError('No module named vitron_ros_msgs')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from vitron_ros.doctor import doctor_context, run_checks\n"
        "for r in run_checks(doctor_context('tiny'), ['interfaces']): print(r.status, '|', r.detail, '|', r.fix)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    missing = [line for line in lines if "vitron_ros_msgs does not import" in line]
    assert missing and missing[0].startswith("fail") and "colcon build --packages-select vitron_ros_msgs" in missing[0]
    assert any(line.startswith("ok") and "vision_msgs" in line for line in lines)


def test_an_interface_package_built_from_other_definitions_is_named_field_by_field():
    require_ros()
    from vitron_ros.doctor.ros import compare_package, definition_fields
    from vitron_ros.ros.interfaces import interface_definitions

    definitions = interface_definitions("vitron_ros_msgs", prefer_checkout=True)
    assert compare_package("vitron_ros_msgs", definitions) == []
    stale = dict(definitions)
    stale["vitron_ros_msgs/msg/Answer"] += "\nfloat64 confidence  # a field added after the build\n"
    stale["vitron_ros_msgs/msg/PixelBox"] = stale["vitron_ros_msgs/msg/PixelBox"].replace("float32", "float64")
    problems = compare_package("vitron_ros_msgs", stale)
    assert len(problems) == 2
    assert problems[0].startswith("vitron_ros_msgs/msg/Answer: missing ['confidence']")
    assert "types" in problems[1] and "double" in problems[1]
    # the .msg grammar as rosidl names the generated fields
    assert definition_fields("float32[] a\nuint8[4] b\nstring<=8 c\nint32[<=3] d\nHeader h\n"
                             "geometry_msgs/Pose p\nPixelBox box 5\nuint8 K=3\nbool flag true  # c", "pkg") == {
        "a": "sequence<float>", "b": "uint8[4]", "c": "string<8>", "d": "sequence<int32, 3>",
        "h": "std_msgs/Header", "p": "geometry_msgs/Pose", "box": "pkg/PixelBox", "flag": "boolean"}


def test_a_check_that_raises_is_reported_as_its_own_failure(monkeypatch):
    from vitron_ros import doctor

    def broken(context):
        raise KeyError("boom")

    monkeypatch.setitem(doctor.CHECKS, "python", broken)
    (result,) = run_checks(doctor_context("tiny"), ["python"])
    assert result.status == FAIL and "KeyError" in result.detail and result.fix
    with pytest.raises(ValueError, match="unknown doctor check 'gpu'"):
        run_checks(doctor_context("tiny"), ["gpu"])
    with pytest.raises(ValueError, match="needs a one-line fix"):
        CheckResult("torch", WARN, "no fix given")
