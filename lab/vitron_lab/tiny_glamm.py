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


def build_tiny_glamm(profile: ProfileConfig, fixture: Path = FIXTURE, progress=print) -> None:
    """Convert the fixture into the folder the profile's llm.model names (its parent: llava/ and sam.safetensors)."""
    out = Path(profile.llm.model).parent
    if (out / "llava" / "config.json").is_file() and (out / "sam.safetensors").is_file():
        return
    config = json.loads((fixture / "config.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        published = Path(tmp) / "GLaMM-tiny"  # the published layout: config.json, weights and tokenizer together
        shutil.copytree(fixture / "tokenizer", published)
        (published / "config.json").write_text(json.dumps(config["glamm"]))
        shutil.copy(fixture / "glamm_tiny.safetensors", published / "model.safetensors")
        convert_glamm(published, fixture / "clip_tiny", out, progress=progress)
