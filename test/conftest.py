"""Shared fixtures: one tiny model cache per test session, one tiny pipeline, a demo image."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_IMAGE = REPO / "assets" / "demo_scene.png"

# Tests never reach a model hub; local_files_only is also set in code, this makes any slip fail fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def vitron_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("vitron_cache")
    os.environ["VITRON_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def tiny_profile(vitron_cache):
    from vitron_ros.core.config import load_profile
    from vitron_ros.core.model.tiny import build_tiny_assets

    profile = load_profile("tiny")
    build_tiny_assets(profile)
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
