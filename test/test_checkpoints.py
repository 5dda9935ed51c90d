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


def test_a_tiny_sam_checkpoint_carries_its_sizes_in_its_tensors(tmp_path):
    """No profile repeats a tiny SAM's sizes: load_sam reads them back from any tiny state dict."""
    from vitron_ros.core.model.sam_loader import TinySamSize, build_sam, tiny_sam_size

    size = TinySamSize(image_size=96, patch_size=8, embed_dim=48, depth=3, heads=3, prompt_dim=32)
    torch.manual_seed(0)
    built = build_sam("tiny", size)
    path = tmp_path / "odd_tiny.pth"
    torch.save(built.state_dict(), path)
    assert tiny_sam_size(built.state_dict()) == size
    loaded = load_sam("tiny", path)
    assert loaded.image_encoder.img_size == 96 and loaded.prompt_encoder.embed_dim == 32
    with pytest.raises(CheckpointLoadError, match="not a SAM state dict"):
        tiny_sam_size({"something.else": torch.zeros(1)}, "odd.pth")


def test_the_llm_takes_box_format_system_turn_and_clip_length_from_its_checkpoint(tmp_path):
    """The shipped shapes LLM's facts file sets what its profile leaves out, and how it pools clips and prompts the
    segmenter; a profile that contradicts the checkpoint is refused by name; a broken facts file (or one naming a
    pooling this version lacks, or a fact of the wrong type) is a load error, not a silent default."""
    import dataclasses
    import shutil

    from vitron_ros.core.config import load_profile
    from vitron_ros.core.model.facts import FACTS_FILE, read_facts, write_facts
    from vitron_ros.core.model.video_pooling import VIDEO_POOLINGS
    from vitron_ros.core.model.vitron_llm import VitronLLM

    config = load_profile("shapes").llm
    assert config.box_format is None and config.system_prompt is None  # the profile says nothing of either
    facts = read_facts(config.model)
    llm = VitronLLM.from_pretrained(config)
    assert (llm.config.box_format, llm.config.system_prompt, llm.clip_frames) == (
        facts.box_format, facts.system_prompt, facts.clip_frames) == (
        "normalized", "You are VITRON, a pixel-level vision assistant.", 8)
    assert (llm.box_prompt, facts.box_prompt, facts.video_pooling) == (False, False, "time_mean_frame_grid4")
    assert llm.video_pooling is VIDEO_POOLINGS["time_mean_frame_grid4"]
    with pytest.raises(CheckpointLoadError, match="trained with box_format='normalized' but the profile sets 'pixel'"):
        VitronLLM.from_pretrained(dataclasses.replace(config, box_format="pixel"))
    copy = tmp_path / "llava"
    shutil.copytree(config.model, copy)
    (copy / FACTS_FILE).write_text("{not json")
    with pytest.raises(CheckpointLoadError, match="not a readable facts file"):
        VitronLLM.from_pretrained(dataclasses.replace(config, model=str(copy)))
    write_facts(copy, dataclasses.replace(facts, video_pooling="frame_soup"))
    with pytest.raises(CheckpointLoadError, match="pools clips with 'frame_soup', which this version does not know"):
        VitronLLM.from_pretrained(dataclasses.replace(config, model=str(copy)))
    write_facts(copy, dataclasses.replace(facts, box_prompt="false"))
    with pytest.raises(CheckpointLoadError, match="box_prompt must be a bool or null, not 'false'"):
        VitronLLM.from_pretrained(dataclasses.replace(config, model=str(copy)))
