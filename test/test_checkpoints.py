"""Loading the official formats, and the messages when a checkpoint is missing or broken."""

import pytest
import torch

from vitron_ros.core.errors import CheckpointLoadError, CheckpointNotFoundError
from vitron_ros.core.model.sam_loader import load_sam
from vitron_ros.core.model.vitron_llm import resolve_model_path


def test_official_vit_b_state_dict_loads_key_for_key(tmp_path):
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    official = sam_model_registry["vit_b"](checkpoint=None)  # the official architecture, random weights
    path = tmp_path / "sam_vit_b_random.pth"
    torch.save(official.state_dict(), path)  # the official checkpoint format: a plain state dict
    loaded = load_sam("vit_b", path)
    reference = official.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, reference[key]), key
    assert not loaded.training


def test_checkpoint_of_another_architecture_is_refused(tmp_path, tiny_profile):
    with pytest.raises(CheckpointLoadError, match="does not (match|fit)"):
        load_sam("vit_b", tiny_profile.section("segmenter").checkpoint)


def test_missing_checkpoint_names_file_and_fetch_command(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match=r"sam_vit_h\.pth; run `vitron models fetch --profile default`"):
        load_sam("vit_h", tmp_path / "sam_vit_h.pth", fetch_hint="run `vitron models fetch --profile default`")


def test_corrupt_and_pickled_checkpoints_are_refused(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a zip archive at all")
    with pytest.raises(CheckpointLoadError, match="cannot read checkpoint"):
        load_sam("tiny", corrupt)
    pickled = tmp_path / "pickled.pth"
    torch.save({"weights": object.__new__(PickledThing)}, pickled)
    with pytest.raises(CheckpointLoadError, match="cannot read checkpoint"):  # weights_only refuses the class
        load_sam("tiny", pickled)


class PickledThing:
    pass


def test_hub_id_not_in_cache_names_id_and_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(CheckpointNotFoundError, match=r"'someorg/some-model' is not in the local cache; run `vitron"):
        resolve_model_path("someorg/some-model", None, "run `vitron models fetch --profile x`")
    with pytest.raises(CheckpointNotFoundError, match="folder not found"):
        resolve_model_path(str(tmp_path / "absent"), None, "hint")
