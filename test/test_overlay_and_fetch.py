import numpy as np
import pytest

from vitron_ros.core.config import load_profiles
from vitron_ros.core.fetch import download_file, fetch_profile
from vitron_ros.core.overlay import colour_for, render_overlay


def test_overlay_colours_masks_outlines_and_labels():
    image = np.full((60, 80, 3), 100, np.uint8)
    a = np.zeros((60, 80), bool)
    a[10:30, 10:30] = True
    b = np.zeros((60, 80), bool)
    b[35:55, 45:75] = True
    out = render_overlay(image, [a, b], ["a", "b"])
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[0, 79], image[0, 79])  # outside every mask: untouched
    centre_a, centre_b = out[22, 20].astype(int), out[48, 60].astype(int)
    assert not np.array_equal(centre_a, centre_b)  # a colour per mask
    expected_a = np.round(0.55 * 100 + 0.45 * np.asarray(colour_for(0))).astype(int)
    assert np.abs(centre_a - expected_a).max() <= 1
    with pytest.raises(ValueError, match="mask 0 has shape"):
        render_overlay(image, [np.zeros((5, 5), bool)])


def test_download_shows_progress_and_writes_atomically(tmp_path, capsys):
    source = tmp_path / "weights.bin"
    source.write_bytes(b"\x01" * 3_000_000)
    target = tmp_path / "cache" / "sam" / "weights.bin"
    download_file(source.as_uri(), target)  # file:// keeps the test off the network
    assert target.read_bytes() == source.read_bytes()
    assert not list(target.parent.glob("*.part"))
    assert "sha256" in capsys.readouterr().out


def test_fetch_profile_downloads_a_missing_sam_checkpoint(tmp_path):
    source = tmp_path / "sam_src.pth"
    source.write_bytes(b"checkpoint bytes")
    llm_folder = tmp_path / "llm"
    llm_folder.mkdir()
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(
        f"profiles:\n  robot:\n    llm: {{model: {llm_folder}}}\n"
        f"    segmenter: {{arch: vit_b, checkpoint: {tmp_path}/cache/sam.pth, url: '{source.as_uri()}'}}\n"
    )
    fetch_profile(load_profiles(profiles)["robot"], progress=False)
    assert (tmp_path / "cache" / "sam.pth").read_bytes() == b"checkpoint bytes"
