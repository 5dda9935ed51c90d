"""Installing on a robot that already has torch: pip keeps the robot's torch and torchvision (setup.py states
ranges; the exact set CI runs is constraints.txt), the package then answers the tiny query, and `vitron doctor`
catches a torchvision that was made for another torch.

A fresh venv gets a torch release pair other than constraints.txt's (PyPI's CUDA builds, which run on the CPU);
about 2 minutes on 2 cores, most of it unpacking CUDA libraries."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DEMO_IMAGE, REPO, tracked_copy

ROBOT_TORCH = ("torch==2.14.0", "torchvision==0.29.0")  # a matching pair, one release before constraints.txt's
STALE_TORCHVISION = "torchvision==0.28.0"  # made for torch 2.13.0


def _pins() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))


def _run(args, timeout=900, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{args}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def robot(tmp_path_factory):
    """A fresh venv holding ROBOT_TORCH, as a robot image would, and a clean copy of this repository."""
    assert _pins()["torch"] != ROBOT_TORCH[0].split("==")[1], "ROBOT_TORCH must differ from constraints.txt's"
    root = tmp_path_factory.mktemp("robot")
    venv = root / "venv"
    _run([sys._base_executable, "-m", "venv", venv], timeout=300)
    print(f"installing {' '.join(ROBOT_TORCH)} into a fresh venv (about 2 minutes)", flush=True)
    _run([venv / "bin" / "pip", "install", "-q", "--disable-pip-version-check", *ROBOT_TORCH])
    return venv, tracked_copy(root / "vitron_ros")


def _torch_versions(venv: Path) -> tuple[str, str]:
    code = "import importlib.metadata as m; print(m.version('torch'), m.version('torchvision'))"
    return tuple(_run([venv / "bin" / "python", "-c", code]).stdout.split())


@pytest.mark.slow
def test_installing_keeps_the_robots_torch_and_the_tiny_query_runs_on_it(robot, tmp_path):
    venv, source = robot
    pip = [venv / "bin" / "pip", "--disable-pip-version-check"]
    # pip's own account of what `pip install .` would change
    _run([*pip, "install", "-q", "--dry-run", "--report", tmp_path / "report.json", source])
    report = json.loads((tmp_path / "report.json").read_text())
    changes = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
               for item in report["install"]}
    assert "torch" not in changes and "torchvision" not in changes, changes
    assert not [name for name in changes if name.startswith("nvidia-")], changes  # no second CUDA stack either
    assert {"vitron-ros", "transformers", "segment-anything"} <= set(changes)

    _run([*pip, "install", "-q", source])
    assert _torch_versions(venv) == ("2.14.0", "0.29.0")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "VITRON_CACHE": os.environ["VITRON_CACHE"]}  # the session's built tiny profile
    out = tmp_path / "query"
    done = _run([venv / "bin" / "vitron", "query", DEMO_IMAGE, "segment the red box", "--profile", "tiny",
                 "--device", "cpu", "--out", out], env=env, cwd=tmp_path)
    assert (out / "result.json").is_file() and (out / "overlay.png").is_file(), done.stdout
    # the doctor agrees: this torch pair is fine; without ROS 2 in this venv only the ROS checks warn
    doctor = subprocess.run([venv / "bin" / "vitron", "doctor", "--profile", "tiny", "--json"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    results = json.loads(doctor.stdout)
    assert doctor.returncode == 0, [r for r in results if r["status"] == "fail"]
    assert {r["check"] for r in results if r["status"] == "warn"} <= {"ros", "interfaces", "memory"}
    assert any("torch 2.14.0" in r["detail"] for r in results if r["check"] == "torch")


@pytest.mark.slow
def test_the_doctor_fails_a_torchvision_made_for_another_torch_and_its_fix_line_repairs_it(robot, tmp_path):
    venv, source = robot
    pip = [venv / "bin" / "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "-q", source])  # nothing to do when the test above ran
    _run([*pip, "install", "-q", "--no-deps", STALE_TORCHVISION])
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "VITRON_CACHE": os.environ["VITRON_CACHE"]}

    def doctor():
        done = subprocess.run([venv / "bin" / "vitron", "doctor", "--profile", "tiny", "--json", "--no-hash"], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
        return done.returncode, [r for r in json.loads(done.stdout) if r["check"] == "torchvision"]

    code, (torchvision,) = doctor()
    assert code == 1 and torchvision["status"] == "fail"
    assert "torchvision 0.28.0 was made for torch==2.13.0, but torch 2.14.0 is installed" in torchvision["detail"]
    fix = torchvision["fix"].split(" (")[0]
    assert fix == "pip install --upgrade 'torch==2.14.0' torchvision"
    _run(["bash", "-c", fix], env=env)  # the fix line as a user would paste it
    code, (torchvision,) = doctor()
    assert code == 0 and torchvision["status"] == "ok" and "NMS runs" in torchvision["detail"]
    assert _torch_versions(venv)[0] == "2.14.0"  # the robot's torch, still
