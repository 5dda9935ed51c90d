"""The `glamm-tiny` profile: GLaMM's own model at tiny size (random weights, made by GLaMM's code:
test/fixtures/glamm), laid out as a published GLaMM checkpoint and converted by the runtime's converter, exactly as
`vitron models convert-glamm` converts MBZUAI/GLaMM-FullScope."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from vitron_ros.core.config import ProfileConfig
from vitron_ros.core.model.glamm import convert_glamm

FIXTURE = Path(__file__).resolve().parents[2] / "test" / "fixtures" / "glamm"


def stage_published_layout(destination: Path, fixture: Path = FIXTURE) -> tuple[Path, Path]:
    """The fixture laid out as MBZUAI/GLaMM-* is (config.json, weights and tokenizer together) under `destination`:
    (the GLaMM folder, the CLIP tower folder)."""
    config = json.loads((fixture / "config.json").read_text())
    published = Path(destination) / "GLaMM-tiny"
    shutil.copytree(fixture / "tokenizer", published)
    (published / "config.json").write_text(json.dumps(config["glamm"]))
    shutil.copy(fixture / "glamm_tiny.safetensors", published / "model.safetensors")
    return published, fixture / "clip_tiny"


def build_tiny_glamm(profile: ProfileConfig, fixture: Path = FIXTURE, progress=print) -> None:
    """Convert the fixture into the folder the profile's llm.model names (its parent: llava/ and sam.safetensors)."""
    out = Path(profile.llm.model).parent
    if (out / "llava" / "config.json").is_file() and (out / "sam.safetensors").is_file():
        return
    with tempfile.TemporaryDirectory() as tmp:
        published, clip = stage_published_layout(Path(tmp), fixture)
        convert_glamm(published, clip, out, progress=progress)
