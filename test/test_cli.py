"""The `vitron` CLI: one end-to-end run in a subprocess, and every bad input as one line with exit code 2."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vitron_ros.cli import main
from vitron_ros.core.image_io import load_image
from vitron_ros.core.masks import rle_decode

from .conftest import DEMO_IMAGE


def test_query_writes_overlay_and_result_json(tiny_profile, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "vitron_ros.cli", "query", str(DEMO_IMAGE), "what is this?",
         "--box", "40,60,150,170", "--point", "245,190", "--profile", "tiny", "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=300, env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    saved = json.loads((out / "result.json").read_text())
    assert printed == saved
    image = load_image(DEMO_IMAGE)
    overlay = load_image(out / "overlay.png")
    assert overlay.shape == image.shape and not np.array_equal(overlay, image)
    assert saved["image_size"] == {"height": image.shape[0], "width": image.shape[1]}
    assert len(saved["masks"]) >= 2
    for m in saved["masks"]:
        assert rle_decode(m["rle"]).shape == image.shape[:2]
    assert saved["timings_s"]["total"] > 0 and saved["timings_s"]["llm_generate"] > 0
    assert "Traceback" not in done.stderr


def test_query_summary_output(tiny_profile, tmp_path, capsys):
    assert main(["query", str(DEMO_IMAGE), "what is it?", "--point", "95,115", "--profile", "tiny", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("answer: ") and "mask 0: 'region 1'" in printed and "timings:" in printed


def test_query_with_the_segmentation_task_on_glamm_tiny_writes_its_mask(glamm_tiny_profile, tmp_path, capsys):
    argv = ["query", str(DEMO_IMAGE), "segment the red circle", "--profile", "glamm-tiny", "--task", "segmentation",
            "--out", str(tmp_path), "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["errors"] == [] and "[SEG]" in result["raw_reply"]
    assert any(m["source"] == "signal_embedding" for m in result["masks"])
    assert main([*argv[:5], "--task", "painting", "--out", str(tmp_path)]) == 2


def _fails(argv, capsys, expected):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vitron: error: "), err
    assert expected in lines[0], lines[0]


def test_bad_inputs_give_one_line_and_exit_2(tmp_path, capsys):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG but not really")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    img = str(DEMO_IMAGE)  # 320 x 240
    cases = [
        (["query", str(tmp_path / "absent.png"), "x", "--profile", "tiny"], "image file not found"),
        (["query", str(garbage), "x", "--profile", "tiny"], "cannot decode image file"),
        (["query", str(empty), "x", "--profile", "tiny"], "cannot decode image file"),
        (["query", str(tmp_path), "x", "--profile", "tiny"], "not a file"),
        (["query", img, "x", "--point", "1,a", "--profile", "tiny"], "--point '1,a': expected 2 comma-separated"),
        (["query", img, "x", "--box", "1,2,3", "--profile", "tiny"], "--box '1,2,3': expected 4"),
        (["query", img, "x", "--point", "400,10", "--profile", "tiny"], "--point #1 (400, 10) lies outside the 320x240"),
        (["query", img, "x", "--box", "50,50,10,80", "--profile", "tiny"], "x1 < x2"),
        (["query", img, "x", "--box", "0,0,321,100", "--profile", "tiny"], "outside the 320x240 image"),
        (["query", img, "x", "--profile", "nope"], "unknown profile 'nope'"),
        (["query", img, "x", "--profile", "tiny", "--device", "tpu"], "unknown device 'tpu'"),
        (["query", img], "the following arguments are required: request"),
        (["frobnicate"], "invalid choice"),
    ]
    for argv, expected in cases:
        _fails(argv, capsys, expected)


def test_missing_checkpoint_points_at_fetch(tmp_path, capsys):
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(
        "profiles:\n  robot:\n    llm: {model: someorg/absent-llava}\n"
        f"    segmenter: {{arch: vit_b, checkpoint: {tmp_path}/sam_vit_b.pth}}\n"
    )
    _fails(["query", str(DEMO_IMAGE), "x", "--profile", "robot", "--profiles-file", str(profiles)], capsys,
           "sam_vit_b.pth; run `vitron models fetch --profile robot`")
    (tmp_path / "sam_vit_b.pth").write_bytes(b"truncated download")
    _fails(["query", str(DEMO_IMAGE), "x", "--profile", "robot", "--profiles-file", str(profiles)], capsys,
           "cannot read checkpoint")


def test_models_list(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "tiny:" in out and "default: llm=llava-hf/llava-1.5-7b-hf segmenter=" in out


@pytest.mark.parametrize("argv", [["--help"], ["query", "--help"]])
def test_help_exits_cleanly(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "usage: vitron" in capsys.readouterr().out


def test_query_with_depth_prints_and_writes_each_masks_3d_position(tiny_profile, tmp_path, capsys):
    """A wall at 1.5 m (16-bit PNG, millimetres): every mask that has 3D sits on it, back-projected through the
    given intrinsics; a 32-bit float .npy in metres gives the same figures."""
    import cv2

    image = load_image(DEMO_IMAGE)
    height, width = image.shape[:2]
    png, npy = tmp_path / "depth.png", tmp_path / "depth.npy"
    cv2.imwrite(str(png), np.full((height, width), 1500, np.uint16))
    np.save(npy, np.full((height, width), 1.5, np.float32))
    results = []
    for depth in (png, npy):
        out = tmp_path / depth.suffix[1:]
        args = ["query", str(DEMO_IMAGE), "what is this?", "--box", "40,60,150,170", "--profile", "tiny", "--out",
                str(out), "--depth", str(depth), "--intrinsics", f"500,500,{width / 2},{height / 2}"]
        assert main(args) == 0
        printed = capsys.readouterr().out
        saved = json.loads((out / "result.json").read_text())
        assert "3D:" in printed and len(saved["masks"]) >= 1
        found = [m["object_3d"] for m in saved["masks"] if "centroid_m" in m["object_3d"]]
        assert found and all(abs(f["centroid_m"][2] - 1.5) < 1e-3 for f in found)
        assert "centroid (" in printed and "camera optical frame" in printed
        results.append(found)
    assert results[0] == results[1]


@pytest.mark.parametrize("extra,message", [
    (["--depth", "DEPTH"], "--depth and --intrinsics go together"),
    (["--depth", "SMALL", "--intrinsics", "500,500,100,100"], "must be aligned to the image"),
    (["--depth", "COLOUR", "--intrinsics", "500,500,100,100"], "expected one channel of uint16"),
    (["--depth", "DEPTH", "--intrinsics", "500,500"], "expected four numbers fx,fy,cx,cy"),
    (["--depth", "MISSING", "--intrinsics", "500,500,100,100"], "depth file not found"),
])
def test_query_depth_inputs_that_cannot_be_used_are_refused_before_any_model_loads(tmp_path, capsys, extra, message):
    import cv2

    height, width = load_image(DEMO_IMAGE).shape[:2]
    files = {"DEPTH": tmp_path / "depth.png", "SMALL": tmp_path / "small.png", "COLOUR": tmp_path / "colour.png",
             "MISSING": tmp_path / "missing.png"}
    cv2.imwrite(str(files["DEPTH"]), np.full((height, width), 1000, np.uint16))
    cv2.imwrite(str(files["SMALL"]), np.full((10, 10), 1000, np.uint16))
    cv2.imwrite(str(files["COLOUR"]), np.zeros((height, width, 3), np.uint8))
    args = ["query", str(DEMO_IMAGE), "what?", "--profile", "tiny"] + [str(files.get(a, a)) for a in extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_eval_3d_suite_prints_ours_and_the_box_centre_method(capsys):
    from vitron_lab.cli import main as lab_main

    assert lab_main(["eval", "--suite", "3d", "--scenes", "2"]) == 0
    printed = capsys.readouterr().out
    assert "| sensor | all | ours |" in printed and "| sensor | all | box_centre |" in printed
    assert "centroid median <= 1.0 % of range" in printed


def test_a_tiny_profile_not_built_says_which_lab_command_builds_it(tmp_path, monkeypatch, capsys):
    """The runtime cannot build random weights (that is the lab's); it names the command that does."""
    monkeypatch.setenv("VITRON_CACHE", str(tmp_path / "empty_cache"))
    assert main(["query", str(DEMO_IMAGE), "what is this?", "--profile", "tiny", "--out", str(tmp_path / "q")]) == 2
    assert "vitron-lab build-tiny" in capsys.readouterr().err
    assert main(["models", "fetch", "--profile", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "is not downloaded from anywhere" in err and "vitron-lab build-tiny" in err
