"""Clip questions and video referring segmentation through the pipeline; tracking calls through the one parser."""

import numpy as np
import pytest
import torch

from vitron_ros.core.conversation import Conversation, Turn
from vitron_ros.core.errors import VitronInputError
from vitron_ros.core.pipeline import VitronPipeline
from vitron_ros.core.specialists import Frame, SpecialistCall
from vitron_ros.core.video import ClipSampling, check_clip


def _clip(scene, count=5):
    return [np.roll(scene, 4 * i, axis=1) for i in range(count)]


def test_clip_sampling_spreads_frames_over_the_clip():
    assert ClipSampling(frames=4).indices(10) == [0, 3, 6, 9]
    assert ClipSampling(frames=8).indices(3) == [0, 1, 2]
    with pytest.raises(VitronInputError, match="at least 1 frame"):
        ClipSampling(frames=0).indices(5)


def test_clip_errors_name_the_frame(scene):
    with pytest.raises(VitronInputError, match="at least one frame"):
        check_clip([])
    with pytest.raises(VitronInputError, match="clip frame 2 is 100x120, frame 0 is 200x120"):
        check_clip([scene, scene, scene[:, :100]])
    with pytest.raises(VitronInputError, match="clip frame 1 must be uint8"):
        check_clip([scene, scene.astype(np.float32)])
    with pytest.raises(VitronInputError, match="more than max_clip_frames=2"):
        check_clip([scene] * 3, ClipSampling(max_clip_frames=2))


def test_video_encoding_pools_frame_features_over_time(tiny_pipeline, scene):
    llm = tiny_pipeline.llm
    frames = _clip(scene, 3)
    video = llm.encode_video(frames)
    singles = torch.stack([llm.encode_image(f).features for f in frames])
    grid = video.grid
    assert video.frames == 3 and video.features.shape[0] == grid * grid + 3
    torch.testing.assert_close(video.spatial, singles.mean(dim=0), rtol=1e-4, atol=1e-5)  # what is where
    torch.testing.assert_close(video.features[grid * grid :], singles.mean(dim=1), rtol=1e-4, atol=1e-5)  # when


def test_a_checkpoint_trained_on_frame_grids_gets_where_things_are_in_each_frame(tiny_pipeline, scene, monkeypatch):
    """time_mean_frame_grid4 (the shapes LLM's facts name it): the same time-averaged patches, then each frame's
    patches pooled to 4 x 4, so an object's position in each frame, and its motion, is in the tokens."""
    from vitron_ros.core.model.video_pooling import VIDEO_POOLINGS

    llm = tiny_pipeline.llm
    monkeypatch.setattr(llm, "video_pooling", VIDEO_POOLINGS["time_mean_frame_grid4"])
    frames = _clip(scene, 3)
    video = llm.encode_video(frames)
    singles = torch.stack([llm.encode_image(f).features for f in frames])  # (T, N, D)
    grid, width = video.grid, singles.shape[-1]
    assert video.features.shape[0] == grid * grid + 16 * 3
    torch.testing.assert_close(video.spatial, singles.mean(dim=0), rtol=1e-4, atol=1e-5)
    maps = singles.reshape(3, grid, grid, width)

    def span(i):  # the patches a cell covers (adaptive pooling: they overlap when 4 does not divide the grid)
        return slice(i * grid // 4, -(-(i + 1) * grid // 4))

    for t, row, col in ((0, 0, 0), (1, 2, 3), (2, 3, 1)):  # frame t's cell (row, col) averages its patches
        cell = maps[t, span(row), span(col)].mean(dim=(0, 1))
        torch.testing.assert_close(video.features[grid * grid + 16 * t + 4 * row + col], cell, rtol=1e-4, atol=1e-5)
    conversation = Conversation(image_hw=scene.shape[:2], turns=[Turn(user="what moves?")])
    prompt = llm.build_prompt(conversation, video)
    assert prompt.ids.count(llm.image_token_id) == grid * grid + 16 * 3  # the LLM is shown every one of them


def test_ask_clip_answers_and_follows_each_grounded_mask_through_the_clip(tiny_pipeline, scene):
    frames = _clip(scene)
    result, conversation = tiny_pipeline.ask_clip(frames, "segment the red box", ClipSampling(frames=3))
    assert result.clip_frames == 5 and conversation.image_hw == scene.shape[:2]
    grounded = [m for m in result.masks if m.invocation_index is not None and m.mask.any()]
    assert len(result.tracks) == len(grounded)
    for track, mask in zip(result.tracks, grounded, strict=True):
        assert track.masks.shape == (5, *scene.shape[:2]) and track.scores.shape == (5,)
        assert track.label == mask.label
    assert "llm_generate" in result.timings and result.to_json()["clip_frames"] == 5


def test_a_tracking_invocation_is_grounded_by_the_segmenter_then_followed(tiny_pipeline, scene):
    reply = ("<module>tracker</module> <instruction>tracking: the red box</instruction> "
             "<Region>[0.15, 0.30, 0.45, 0.55]</Region>")
    result = tiny_pipeline.ground_reply(scene, "follow the red box", reply)
    assert result.errors == [] and [i.module for i in result.invocations] == ["tracker"]
    assert len(result.masks) == 1 and result.masks[0].label == "the red box"
    assert len(result.tracks) == 1 and result.tracks[0].masks.shape == (1, *scene.shape[:2])
    # the tracker was prompted with the segmenter's key-frame mask: the same call made directly gives the same track
    direct = tiny_pipeline.specialists["tracker"].run(Frame(scene), [SpecialistCall("tracking", mask=result.masks[0].mask)])
    np.testing.assert_array_equal(result.tracks[0].masks, direct[0].masks)


def test_without_a_tracker_tracking_calls_are_rejected_by_the_parser(tiny_pipeline, scene):
    still = VitronPipeline(tiny_pipeline.llm, {"segmenter": tiny_pipeline.specialists["segmenter"]}, "no-video")
    reply = "<module>tracker</module> <instruction>tracking: the red box</instruction> <Region>[0.1, 0.1, 0.5, 0.5]</Region>"
    result = still.ground_reply(scene, "follow the red box", reply)
    assert result.tracks == [] and any("unknown module 'tracker'" in e for e in result.errors)
    clip_result, _ = still.ask_clip(_clip(scene, 3), "what happened?")
    assert clip_result.tracks == [] and clip_result.clip_frames == 3


def test_track_cli_streams_a_video_and_writes_overlays_and_per_frame_tracks(tiny_profile, scene, tmp_path, capsys):
    import json

    import cv2

    from vitron_ros.cli import main

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (scene.shape[1], scene.shape[0]))
    for frame in _clip(scene, 6):
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    out = tmp_path / "out"
    args = ["track", str(video), "--track-box", "30,20,90,70", "--ask", "what happened?", "--profile", "tiny",
            "--out", str(out), "--max-frames", "5"]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "obj1 (box):" in printed and "answer about 5 frames:" in printed
    lines = [json.loads(line) for line in (out / "tracks.jsonl").read_text().splitlines()]
    assert [line["frame_index"] for line in lines] == [0, 1, 2, 3, 4]
    assert all([o["object_id"] for o in line["objects"]] == ["obj1"] for line in lines)
    assert (out / "overlay.mp4").stat().st_size > 0 and (out / "strip.png").is_file()
    assert main(["track", str(video), "--profile", "tiny"]) == 2
    assert "track needs --track, --track-box or --ask" in capsys.readouterr().err
    assert main(["track", str(tmp_path / "missing.avi"), "--track", "the mug", "--profile", "tiny"]) == 2
    assert "cannot open video" in capsys.readouterr().err
    # a box outside the frame is refused with the box named (it used to end in KeyError: 'obj1')
    assert main(["track", str(video), "--track-box", "1000,1000,1200,1200", "--profile", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "--track-box 1 1000,1000,1200,1200" in err and "outside the 200x120 image" in err


def test_clip_questions_have_the_answers_the_clip_shows():
    from vitron_lab.shapes.video_instructions import make_video_sample, motion_word
    from vitron_lab.shapes.world import generate_clip
    from vitron_ros.core.invocation import parse_reply

    sampled = ClipSampling().indices(16)
    directions = 0
    for seed in range(40):
        clip = generate_clip(seed, frames=16)
        rng = np.random.default_rng(seed)
        count = make_video_sample(clip, sampled, rng, kind="count")
        assert count.answer == str(len(clip.specs))
        direction = make_video_sample(clip, sampled, rng, kind="direction")
        if direction is not None:
            directions += 1
            name = direction.request.removeprefix("which way did ").removesuffix(" move?")
            k = next(i for i, s in enumerate(clip.specs) if f"the {s.colour} {s.shape}" == name)
            (x0, y0), (x1, y1) = clip.tracks[sampled[0]][k], clip.tracks[sampled[-1]][k]
            moved = {"left": x0 - x1, "right": x1 - x0, "up": y0 - y1, "down": y1 - y0}[direction.answer]
            assert moved >= 0.12 * 64 and direction.answer == motion_word(clip, k, sampled[0], sampled[-1])
        referring = make_video_sample(clip, sampled, rng, kind="referring")
        if referring is not None:
            parsed = parse_reply(referring.reply, (64, 64), {"segmenter": {"segmentation", "everything"}})
            assert not parsed.errors and parsed.invocations[0].instruction == referring.answer
    assert directions >= 10  # the generator does produce clear-cut motion questions
