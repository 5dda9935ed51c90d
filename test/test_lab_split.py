"""The lab (ShapesWorld, training, evaluation, tiny builds) is a separate distribution: a robot that installs the
runtime alone gets no lab code and still answers queries on the shipped profile."""

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO

LAB_PARTS = ("vitron_lab/", "vitron_ros/core/shapes/", "vitron_ros/core/training/", "vitron_ros/core/evaluation/",
             "vitron_ros/core/model/tiny.py", "train_shapes.yaml")


def test_no_runtime_module_imports_the_lab():
    """Every vitron_ros module imports with the lab made unimportable (the ROS layer needs rclpy, checked too)."""
    code = (
        "import importlib, importlib.abc, pkgutil, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'vitron_lab': raise ImportError('the lab is not installed')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import vitron_ros\n"
        "names = [m.name for m in pkgutil.walk_packages(vitron_ros.__path__, 'vitron_ros.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "assert 'vitron_lab' not in sys.modules\n"
        "print(len(names))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) > 50


@pytest.mark.slow
def test_the_runtime_wheel_holds_no_lab_code_and_answers_on_the_shipped_profile(tmp_path):
    """`pip install .` as a robot does: the wheel has no lab files, and installed into an environment where
    neither editable install is visible, `vitron query` on the shapes profile segments what it is asked to."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(REPO)], check=True, timeout=600)
    (wheel,) = wheels.glob("vitron_ros-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if any(part in n for part in LAB_PARTS)]
    assert any(n.endswith("vitron_ros/cli.py") for n in names)
    assert any(n.endswith("models/shapes/sam.safetensors") for n in names)

    # A bare environment: the test venv's third-party packages through a .pth line (which does not run the editable
    # installs' finders), the wheel installed under its prefix.
    robot = tmp_path / "robot"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(robot)], check=True, timeout=120)
    python = robot / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "test_venv_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--ignore-installed", "-q", "--prefix", str(robot),
                    str(wheel)],
                   check=True, timeout=600)
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util, vitron_ros; print(vitron_ros.__file__); "
                            "print(importlib.util.find_spec('vitron_lab'))"],
        capture_output=True, text=True, cwd=tmp_path, check=True)
    where, lab = probe.stdout.split()
    assert where.startswith(str(robot)) and lab == "None"

    out = tmp_path / "query"
    done = subprocess.run(
        [str(python), "-m", "vitron_ros.cli", "query", str(REPO / "assets" / "shapes_scene.png"),
         "can you segment the yellow triangle below the blue square?", "--profile", "shapes", "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "result.json").is_file() and "segmenter" in done.stdout
