"""Shared fixtures: one tiny model cache per test session, one tiny pipeline, a demo image."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_IMAGE = REPO / "assets" / "demo_scene.png"


def tracked_copy(destination: Path) -> Path:
    """The repository's git-tracked files copied under `destination`: what `git clone` gives."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, destination / name)
    return destination


# Tests never reach a model hub; local_files_only is also set in code, this makes any slip fail fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def vitron_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("vitron_cache")
    os.environ["VITRON_CACHE"] = str(cache)
    return cache


# autouse: tests and the node processes they start run `--profile tiny`, whose random weights the runtime does not
# build (the lab does); built once per session into the session's cache
@pytest.fixture(scope="session", autouse=True)
def tiny_profile(vitron_cache):
    from vitron_lab.tiny import build_tiny_assets
    from vitron_ros.core.config import load_profile

    profile = load_profile("tiny")
    build_tiny_assets(profile)
    return profile


@pytest.fixture(scope="session")
def glamm_tiny_profile(vitron_cache):
    """GLaMM's own tiny model (test/fixtures/glamm) converted into the session cache, as `glamm-tiny` names it."""
    from vitron_lab.tiny_glamm import build_tiny_glamm
    from vitron_ros.core.config import load_profile

    profile = load_profile("glamm-tiny")
    build_tiny_glamm(profile)
    return profile


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_profile):
    from vitron_ros.core.pipeline import VitronPipeline

    return VitronPipeline.from_profile(tiny_profile)


@pytest.fixture()
def scene() -> np.ndarray:
    """A 120 x 200 RGB image: non-square on purpose, so transposed coordinates show."""
    image = np.full((120, 200, 3), 200, np.uint8)
    image[20:70, 30:90] = (220, 30, 30)
    image[60:110, 120:180] = (30, 30, 220)
    return image


@pytest.fixture(scope="session")
def shapes_recipe():
    import dataclasses

    from vitron_lab.training.recipe import load_recipe

    recipe = load_recipe(REPO / "lab" / "config" / "train_shapes.yaml")
    # Small batches: tests check that things run and losses fall, not final quality.
    return dataclasses.replace(recipe, batch_scenes=4, turns_per_scene=3, checkpoint_every=3, log_every=1)


@pytest.fixture(scope="session")
def shapes_trainer(tmp_path_factory, shapes_recipe):
    """A Trainer on the shapes architecture with random initial weights."""
    from vitron_lab.training.trainer import Trainer, relocated
    from vitron_ros.core.config import load_profile

    folder = tmp_path_factory.mktemp("shapes_random")
    profile = relocated(load_profile("shapes"), folder / "export")
    return Trainer(shapes_recipe, folder / "work", profile=profile, progress=False)


@pytest.fixture(scope="session")
def shapes_pipeline(shapes_trainer):
    """The pipeline on the Trainer's current weights, exported and loaded back like any profile."""
    from vitron_lab.training.trainer import export_profile
    from vitron_ros.core.pipeline import VitronPipeline

    export_profile(shapes_trainer.model.eval(), shapes_trainer.processor, shapes_trainer.profile, shapes_trainer.facts())
    return VitronPipeline.from_profile(shapes_trainer.profile, progress=lambda *_: None)


@pytest.fixture(scope="session")
def ros(tmp_path_factory):
    """rclpy initialised on loopback with this run's own domain id (the node processes inherit both)."""
    from test.ros_harness import loopback_env, require_ros, run_domain_id

    rclpy = require_ros()
    os.environ.update(loopback_env(run_domain_id()))
    rclpy.init()
    yield rclpy
    rclpy.try_shutdown()
