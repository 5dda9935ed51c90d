import pytest

from vitron_ros.core.config import load_profile, load_profiles
from vitron_ros.core.errors import VitronInputError


def test_shipped_profiles_load_with_cache_expanded(vitron_cache):
    profiles = load_profiles()
    assert {"tiny", "default"} <= set(profiles)
    assert profiles["tiny"].llm.model.startswith(str(vitron_cache))
    assert profiles["default"].section("segmenter").arch == "vit_h"
    assert profiles["default"].llm.model == "llava-hf/llava-1.5-7b-hf"


def test_unknown_profile_names_the_choices():
    with pytest.raises(VitronInputError, match=r"unknown profile 'nope'; available: .*tiny"):
        load_profile("nope")


def _write(tmp_path, text):
    path = tmp_path / "profiles.yaml"
    path.write_text(text)
    return path


def test_unknown_key_is_named(tmp_path):
    path = _write(tmp_path, "profiles:\n  p:\n    llm: {model: x, temprature: 0.1}\n    segmenter: {arch: vit_b, checkpoint: y}\n")
    with pytest.raises(VitronInputError, match=r"profile 'p'.llm: unknown key\(s\) \['temprature'\]"):
        load_profiles(path)


def test_bad_enum_values_are_named(tmp_path):
    path = _write(tmp_path, "profiles:\n  p:\n    llm: {model: x}\n    segmenter: {arch: vit_q, checkpoint: y}\n")
    with pytest.raises(VitronInputError, match=r"segmenter.arch: expected one of .* got 'vit_q'"):
        load_profiles(path)


def test_missing_section_and_bad_yaml(tmp_path):
    with pytest.raises(VitronInputError, match="profile 'p': the 'segmenter' section is required"):
        load_profiles(_write(tmp_path, "profiles:\n  p:\n    llm: {model: x}\n"))
    with pytest.raises(VitronInputError, match="not valid YAML"):
        load_profiles(_write(tmp_path, "profiles: [unclosed\n"))
    with pytest.raises(VitronInputError, match="cannot read profiles file"):
        load_profiles(tmp_path / "absent.yaml")
