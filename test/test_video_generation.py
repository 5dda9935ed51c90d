"""Text-to-video and image-to-video on the tiny profile (random AnimateDiff parts loaded through from_pretrained),
the `videos` output kind, and `vitron generate-video`."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from vitron_lab.evaluation.video_generation_suite import invocation
from vitron_ros.core.errors import CheckpointLoadError, VitronInputError
from vitron_ros.core.specialists import SpecialistCall
from vitron_ros.core.specialists.video_generator import VideoGenerator, VideoGeneratorConfig


def _reply(instruction: str) -> str:
    task, text = instruction.split(":", 1)
    return invocation(task, text.strip())


@pytest.fixture(scope="module")
def video(tiny_pipeline):
    with tiny_pipeline.specialists.using("video_generator") as specialist:
        yield specialist


def test_text_to_video_end_to_end_is_a_marked_deterministic_clip_conditioned_by_the_text(tiny_pipeline, tiny_profile):
    blank = np.full((64, 64, 3), 127, np.uint8)
    result = tiny_pipeline.ground_reply(blank, "a red circle", _reply("text_to_video: a red circle moving left"))
    assert result.errors == [] and result.images == []
    [clip] = result.videos
    section = tiny_profile.section("video_generator")
    assert (clip.kind, clip.specialist, clip.task, clip.synthetic) == ("generated_video", "video_generator",
                                                                         "text_to_video", True)
    assert clip.frames.shape == (section.frames, section.resolution, section.resolution, 3)
    assert clip.frames.dtype == np.uint8 and clip.fps == section.fps and clip.label == "a red circle moving left"
    assert np.abs(np.diff(clip.frames.astype(np.int16), axis=0)).max() > 0  # frames differ: a clip, not one image
    again = tiny_pipeline.ground_reply(blank, "a red circle", _reply("text_to_video: a red circle moving left"))
    assert np.array_equal(again.videos[0].frames, clip.frames)  # same request, same seed, same clip
    other = tiny_pipeline.ground_reply(blank, "x", _reply("text_to_video: a blue square moving up"))
    assert not np.array_equal(other.videos[0].frames, clip.frames)  # the text reaches the motion model
    payload = result.to_json()["videos"][0]
    assert payload["synthetic"] is True and payload["frames"] == section.frames and payload["fps"] == section.fps
    assert "video_generator_answer" in result.timings


def test_image_to_video_starts_from_the_image_and_comes_back_at_its_size(tiny_pipeline, tiny_profile):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 80, 3), np.uint8)  # not square: the clip keeps the camera's aspect
    result = tiny_pipeline.ground_reply(image, "x", _reply("image_to_video: the square moves left"))
    assert result.errors == []
    [clip] = result.videos
    assert clip.task == "image_to_video" and clip.frames.shape[1:] == image.shape
    assert clip.frames.shape[0] == tiny_profile.section("video_generator").frames
    other_image = rng.integers(0, 255, image.shape, np.uint8)
    other = tiny_pipeline.ground_reply(other_image, "x", _reply("image_to_video: the square moves left"))
    assert not np.array_equal(other.videos[0].frames, clip.frames)  # the image conditions the clip


def test_generation_size_keeps_the_aspect_in_whole_latent_cells(video):
    unit = video.multiple
    assert video.size_for(None) == (video.config.resolution,) * 2
    side = video.config.resolution
    for hw in ((480, 640), (640, 480), (100, 1000), (32, 32), (250, 400)):
        height, width = video.size_for(hw)
        scale = side / max(hw)
        assert height % unit == 0 and width % unit == 0 and max(height, width) == side
        # each side is the scaled side rounded to whole cells (one cell at least)
        assert abs(height - max(hw[0] * scale, unit / 2)) <= unit / 2 and abs(width - max(hw[1] * scale, unit / 2)) <= unit / 2


def test_bad_video_calls_say_what_is_wrong(video):
    image = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(VitronInputError, match="no task 'remove'"):
        video.generate(SpecialistCall(task="remove", instruction="the red circle"), image)
    with pytest.raises(VitronInputError, match="needs a description"):
        video.generate(SpecialistCall(task="text_to_video", instruction="  "))
    with pytest.raises(VitronInputError, match="at least 8 px"):
        video.generate(SpecialistCall(task="image_to_video", instruction="moves left"), np.zeros((4, 64, 3), np.uint8))
    # through run(): a bad call is that call's output, the others are still served
    from vitron_ros.core.specialists import Frame

    outputs = video.run(Frame(image), [SpecialistCall(task="paint", instruction="x"),
                                       SpecialistCall(task="text_to_video", instruction="a red circle")])
    assert isinstance(outputs[0], VitronInputError) and outputs[1].images.shape[0] == video.config.frames


def test_profile_checks_and_loading_failures_are_clear(tiny_profile, tmp_path):
    from vitron_ros.core.config import build_section

    section = tiny_profile.section("video_generator")
    raw = {"model": "a", "motion_adapter": "b"}
    for bad, message in (({"frames": 1}, "frames"), ({"resolution": 30}, "multiple of 8"), ({"steps": 0}, "steps"),
                         ({"fps": 0}, "fps"), ({"colour": 1}, "colour")):
        with pytest.raises(VitronInputError, match=message):
            build_section(VideoGeneratorConfig, {**raw, **bad}, "profiles.x.video_generator")
    # a base the adapter does not fit (the editor's inpainting model), and an inpainting base (9-channel UNet) that
    # it does fit: both named, not a shape error deep in a forward pass
    with pytest.raises(CheckpointLoadError, match="cannot load AnimateDiff.*Motion Adapter"):
        VideoGenerator.from_config(dataclasses.replace(section, model=tiny_profile.section("editor").model), tiny_profile)
    from diffusers import UNet2DConditionModel

    inpaint = tmp_path / "inpaint_base"
    shutil.copytree(section.model, inpaint)
    unet = UNet2DConditionModel.from_pretrained(inpaint / "unet")
    UNet2DConditionModel.from_config({**unet.config, "in_channels": 9}).save_pretrained(inpaint / "unet")
    with pytest.raises(CheckpointLoadError, match="4 input channels"):
        VideoGenerator.from_config(dataclasses.replace(section, model=str(inpaint)), tiny_profile)
    with pytest.raises(CheckpointLoadError, match="SparseCtrl|SparseControlNetModel"):
        VideoGenerator.from_config(dataclasses.replace(section, image_controlnet=section.motion_adapter), tiny_profile)
    # without a control net the profile has text-to-video only, and image-to-video says why not
    text_only = VideoGenerator.from_config(dataclasses.replace(section, image_controlnet=None), tiny_profile)
    assert text_only.tasks == {"text_to_video"}
    with pytest.raises(VitronInputError, match="no image_controlnet"):
        text_only.generate(SpecialistCall(task="image_to_video", instruction="moves"), np.zeros((32, 32, 3), np.uint8))


def test_cli_generate_video_writes_a_playable_clip_and_a_sheet(tmp_path, tiny_profile, capsys):
    import cv2

    from vitron_ros.cli import main
    from vitron_ros.core.image_io import save_image

    source = tmp_path / "frame.png"
    save_image(source, np.random.default_rng(1).integers(0, 255, (48, 64, 3), np.uint8))
    out = tmp_path / "out"
    code = main(["generate-video", "show me the square moving left", "--image", str(source), "--profile", "tiny",
                 "--reply", _reply("image_to_video: the square moves left"), "--out", str(out)])
    assert code == 0
    frames = tiny_profile.section("video_generator").frames
    capture = cv2.VideoCapture(str(out / "generated_video.mp4"))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == frames and capture.get(cv2.CAP_PROP_FRAME_WIDTH) == 64
    payload = json.loads((out / "result.json").read_text())
    assert payload["videos"][0]["file"] == "generated_video.mp4" and payload["videos"][0]["synthetic"] is True
    assert cv2.imread(str(out / "generated_video_sheet.png")).shape[1] == 6 * 64
    assert "synthetic" in capsys.readouterr().out
    # a reply that makes no clip fails with the reason, and non-zero
    code = main(["generate-video", "a red circle", "--profile", "tiny", "--out", str(tmp_path / "none"),
                 "--reply", "<module>segmenter</module> <instruction>segmentation: the red circle</instruction> [SEG]"])
    assert code != 0 and "nothing was generated (no clip)" in capsys.readouterr().err


# -- ShapesWorld motion clips, the reader, the video-gen suite and the shapes training stage ---------------------


def test_motion_clips_move_as_captioned_and_the_reader_reads_them():
    from vitron_lab.shapes.motion import DIRECTIONS, motion_clip, read_motion

    right = total = 0
    for seed in range(60):
        clip = motion_clip(seed)
        assert len(clip.frames) == 8 and clip.caption.count(" moving ") == len(clip.specs)
        for index, (spec, direction) in enumerate(zip(clip.specs, clip.directions)):
            assert direction in DIRECTIONS and clip.request(index) == f"the {spec.colour} {spec.shape} moves {direction}"
            (x0, y0), (x1, y1) = clip.tracks[0][index], clip.tracks[-1][index]
            dx, dy = DIRECTIONS[direction]
            assert (x1 - x0) * dx + (y1 - y0) * dy > 0.19 * 64  # it really goes that way, by 20-40 % of the side
            motion = read_motion(clip.frames, spec.colour, spec.shape)
            right += motion.present >= 0.75 and motion.direction == direction
            total += 1
    assert right / total >= 0.97  # misses: one shape passing over the other
    clip = motion_clip(5)
    still = [clip.frames[0]] * 8
    assert read_motion(still, clip.specs[0].colour, clip.specs[0].shape).direction is None  # no motion, no direction
    absent = next(c for c in ("red", "green", "blue", "yellow", "purple") if c not in {s.colour for s in clip.specs})
    assert read_motion(clip.frames, absent, "circle").present == 0.0


def test_inpainting_unet_folds_into_an_equal_text_to_image_unet():
    from test.conftest import REPO

    import torch
    from diffusers import StableDiffusionInpaintPipeline

    from vitron_lab.training.video_generator_training import empty_image_latent, inpaint_to_text2image

    editor = StableDiffusionInpaintPipeline.from_pretrained(str(REPO / "models/shapes/diffusion"), safety_checker=None,
                                                            requires_safety_checker=False)
    inpaint, vae = editor.unet, editor.vae
    empty = empty_image_latent(vae)
    unet = inpaint_to_text2image(inpaint, empty)
    x, t, text = torch.randn(1, 4, 32, 32), torch.tensor([400]), torch.randn(1, 8, inpaint.config.cross_attention_dim)
    # a whole-canvas generation as the inpainting pipeline feeds it: mask 1, the empty grey canvas's latent
    with torch.no_grad():
        canvas = vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mode() * vae.config.scaling_factor
        inputs = torch.cat([x, torch.ones(1, 1, 32, 32), canvas], 1)
        constant = torch.cat([x, torch.ones(1, 1, 32, 32), empty[None, :, None, None].expand(1, 4, 32, 32)], 1)
        full, folded = inpaint(inputs, t, text).sample, unet(x, t, text).sample
        first, folded_first = inpaint.conv_in(constant), unet.conv_in(x)
    assert unet.config.in_channels == 4
    # the first layer is exactly the inpainting one fed the constant channels, away from the 1-px padding border
    assert torch.allclose(first[..., 1:-1, 1:-1], folded_first[..., 1:-1, 1:-1], atol=1e-4)
    # the real canvas latent is not quite constant, so the whole UNet is close, not equal: closer than with the
    # canvas channels dropped (measured 15 % of the output's size; dropping them leaves more)
    with torch.no_grad():
        dropped = inpaint_to_text2image(inpaint, torch.zeros(4))(x, t, text).sample
    assert (full - folded).abs().mean() < min(0.2 * full.abs().mean(), (full - dropped).abs().mean())


def test_video_generator_training_trains_both_branches_saves_the_published_layout_and_loads_back(tmp_path, tiny_profile):
    from test.conftest import REPO

    import torch

    from vitron_lab.shapes.motion import motion_clip
    from vitron_lab.training.video_generator_training import PARTS, VideoGeneratorTrainConfig, VideoGeneratorTrainer

    config = VideoGeneratorTrainConfig(steps=2, clips_per_step=1, log_every=1, warmup_steps=1, image_share=0.5)
    trainer = VideoGeneratorTrainer(REPO / "models/shapes/diffusion", config, progress=lambda m: None)
    before = {k: v.clone() for k, v in trainer.controlnet.state_dict().items()}
    report = trainer.train()
    assert report["steps"] == 2 and report["loss_last_text"] > 0 and report["loss_last_image"] > 0  # one step each
    trained = trainer.controlnet.state_dict()
    assert any(not torch.equal(before[k], trained[k]) for k in before)  # the image branch reached the control net
    trainer.save(tmp_path / "video", report)
    assert all((tmp_path / "video" / part).is_dir() for part in PARTS)
    section = VideoGeneratorConfig(model=str(tmp_path / "video/base"), motion_adapter=str(tmp_path / "video/motion_adapter"),
                                   image_controlnet=str(tmp_path / "video/sparsectrl_rgb"), scheduler="checkpoint",
                                   dtype="float32", resolution=64, frames=8, steps=2, guidance_scale=1.0)
    generator = VideoGenerator.from_config(section, tiny_profile)
    # exactly the trained weights come back through the published layout: the UNet's 2-D part and motion modules
    loaded, saved = generator.pipe.unet.state_dict(), trainer.unet.state_dict()
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert all(torch.equal(generator.image_pipe.controlnet.state_dict()[k], v) for k, v in trained.items())
    assert generator.pipe.scheduler.config.prediction_type == "sample"  # the scheduler it was trained with
    clip = generator.generate(SpecialistCall(task="text_to_video", instruction="a red circle moving left"))
    assert clip.images.shape == (8, 64, 64, 3)
    start = motion_clip(1).frames[0]
    clip = generator.generate(SpecialistCall(task="image_to_video", instruction="the red circle moves left"), start)
    assert clip.images.shape == (8, *start.shape)
    # AnimateDiff's own scheduler would silently mis-sample a clean-latent model, and too many frames overrun the
    # motion modules' positions: both refused with the reason
    with pytest.raises(CheckpointLoadError, match="scheduler: checkpoint"):
        VideoGenerator.from_config(dataclasses.replace(section, scheduler="animatediff"), tiny_profile)
    with pytest.raises(CheckpointLoadError, match="asks for 40 frames"):
        VideoGenerator.from_config(dataclasses.replace(section, frames=40), tiny_profile)
    with pytest.raises(CheckpointLoadError, match="cannot load the editor"):
        VideoGeneratorTrainer(tmp_path / "nothing", config)
    with pytest.raises(VitronInputError, match="warmup_steps"):
        VideoGeneratorTrainConfig(warmup_steps=0).check("video_generator")


def test_video_gen_suite_reads_the_true_clips_and_runs_both_tasks(tiny_pipeline):
    from vitron_lab.evaluation.video_generation_suite import (
        evaluate_video_generation,
        format_video_generation_report,
    )

    report = evaluate_video_generation(tiny_pipeline, clips=3)
    assert report["frames"] == 8 and report["size"] == 32
    # the true clips, read by the same reader, at the tiny profile's 32 px (0.92 over 100 clips; 1.00 at 64 px)
    assert report["truth"]["direction"] >= 0.75 and report["truth"]["clip_success"] >= 2 / 3
    assert report["image_to_video"]["objects"] == 3 and report["text_to_video"]["objects"] == report["truth"]["objects"]
    assert report["image_to_video"]["first_frame_l1"] > 0  # random weights: frame 0 is not the image
    assert "image-to-video" in format_video_generation_report(report)
