"""Editing through the tracker's masks (core/video_edit.py, `vitron edit-video`) on the tiny profile: every frame's
pixels outside the edited region are the input's, the object is followed, and bad requests say what is wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vitron_lab.shapes.world import COLOURS, generate_clip
from vitron_ros.cli import main
from vitron_ros.core.errors import VitronInputError
from vitron_ros.core.video_edit import TrackedEdit

REMOVE = "<module>editor</module> <instruction>remove: the shape</instruction> <Region>[{}]</Region> [SEG]"


@pytest.fixture(scope="module")
def clip():
    return generate_clip(seed=5, frames=5, size=64, max_objects=2)


def _reply_for(clip) -> str:
    """A remove on the first object's box (the tiny LLM's own boxes are noise; a given reply is deterministic)."""
    ys, xs = np.nonzero(clip.masks[0][0])
    box = [xs.min() / 64, ys.min() / 64, (xs.max() + 1) / 64, (ys.max() + 1) / 64]
    return REMOVE.format(", ".join(f"{v:.3f}" for v in box))


def test_every_frame_is_edited_inside_its_tracked_mask_only(tiny_pipeline, clip):
    edit = TrackedEdit.start(tiny_pipeline, clip.frames[0], "remove the shape", _reply_for(clip))
    assert [e.label for e in edit.edits] == ["remove: the shape"]
    for index, frame in enumerate(clip.frames):
        out = edit.step(frame)
        assert out.index == index and out.image.shape == frame.shape and out.image.dtype == np.uint8
        assert np.array_equal(out.image[~out.region], frame[~out.region])  # byte for byte, in every frame
        if out.edited:
            assert out.region.any() and (out.region | ~out.masks[0]).all()  # the region covers the tracked mask
        else:
            assert not out.region.any() and out.notes
    assert edit.frames == len(clip.frames) and edit.edited_frames >= 1


def test_bad_video_edits_say_what_is_wrong(tiny_pipeline, clip):
    with pytest.raises(VitronInputError, match="nothing to track"):
        TrackedEdit.start(tiny_pipeline, clip.frames[0], "hello", "<module>segmenter</module> oops")
    edit = TrackedEdit.start(tiny_pipeline, clip.frames[0], "remove the shape", _reply_for(clip))
    with pytest.raises(VitronInputError, match="frame 0 is 32x32 but the stream's frames are 64x64"):
        edit.step(clip.frames[0][:32, :32])


def test_edit_video_cli_writes_the_video_sheet_and_a_synthetic_result(tiny_profile, clip, tmp_path, capsys):
    import cv2

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 64))
    for frame in clip.frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    out = tmp_path / "out"
    code = main(["edit-video", str(video), "remove the shape", "--reply", _reply_for(clip), "--profile", "tiny",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert result["synthetic"] is True and len(result["frames"]) == len(clip.frames)
    assert result["frames_edited"] == sum(f["edited"] for f in result["frames"]) >= 1
    capture = cv2.VideoCapture(str(out / "edited.mp4"))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == len(clip.frames)
    sheet = cv2.imread(str(out / "sheet.png"))
    assert sheet.shape[0] == 128 and sheet.shape[1] % 64 == 0  # source above, edited below
    one = tmp_path / "one.avi"
    writer = cv2.VideoWriter(str(one), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 64))
    writer.write(np.ascontiguousarray(clip.frames[0][..., ::-1]))
    writer.release()
    assert main(["edit-video", str(one), "remove it", "--profile", "tiny", "--out", str(tmp_path / "o2")]) == 2
    assert "needs at least 2" in capsys.readouterr().err
    assert main(["edit-video", str(tmp_path / "none.mp4"), "x", "--profile", "tiny"]) == 2
    assert "cannot open video" in capsys.readouterr().err


def test_video_edit_suite_truth_and_report(tiny_pipeline):
    from vitron_lab.evaluation.video_edit_suite import evaluate_video_edit, format_video_edit_report, video_edit_case

    clip, target, request, reply, truth, masks, colour = video_edit_case(2_200_000_003, "remove", frames=3)
    for t, (want, source) in enumerate(zip(truth, clip.frames, strict=True)):
        changed = (want != source).any(-1)
        assert not (changed & ~clip.masks[t][target]).any()  # only the removed object's own pixels change
        assert changed[masks[t]].all() or not masks[t].any()  # the removed object's pixels all change
    clip, target, _, reply, truth, masks, colour = video_edit_case(2_200_000_003, "recolour", frames=3)
    assert f"to {colour}" in reply and (truth[0][masks[0]] == np.array(COLOURS[colour])).all()
    report = evaluate_video_edit(tiny_pipeline, clips=1, frames=3)
    for task in ("remove", "recolour"):
        assert report[task]["frames"] == 3 and 0 <= report[task]["l1_region"] <= 1
        assert 0 <= report[task]["l1_outside"] <= 1 and report[task]["change"] >= 0  # random weights: no quality
    assert len(report["targets"]) == 3 and "| remove | 3 |" in format_video_edit_report(report)


# -- EditVideo.action, without rclpy ----------------------------------------------------------------------------------
def _handlers_with_frames(tiny_pipeline, clip, count):
    from vitron_ros.ros.frame_buffer import CameraFrames
    from vitron_ros.ros.handlers import VitronHandlers
    from vitron_ros.ros.image_conversions import numpy_to_image
    from vitron_ros.ros.interfaces import TypestoreFactory, header

    factory = TypestoreFactory()
    frames = CameraFrames("front", ring_length=8)
    for t in range(count):
        frames.add_image(numpy_to_image(clip.frames[t], "rgb8", factory, header(factory, 1000 + t, "front_optical")))
    handlers = VitronHandlers(factory, {"front": frames})
    handlers.pipeline = tiny_pipeline
    return handlers, factory


def _goal(factory, **fields):
    return factory.new("vitron_ros_msgs/action/EditVideo_Goal", request="remove the shape", **fields)


def test_edit_video_goal_edits_the_recent_frames_and_publishes_each_with_its_header(tiny_pipeline, clip):
    from vitron_ros.ros.image_conversions import image_to_numpy
    from vitron_ros.ros.interfaces import stamp_ns
    from vitron_ros.ros.video_editing import run_edit_video_goal

    handlers, factory = _handlers_with_frames(tiny_pipeline, clip, 5)
    feedback, images = [], []
    result, outcome = run_edit_video_goal(handlers, _goal(factory, reply=_reply_for(clip), max_frames=4), factory,
                                          lambda: False, feedback.append, images.append)
    assert outcome == "succeeded" and result.answer.error == "", result.answer.error
    assert result.frames_edited + result.frames_unchanged == 4 and len(images) == result.frames_edited >= 1
    assert [f.frame for f in feedback] == [1, 2, 3, 4] and all(f.frames == 4 for f in feedback)
    for msg in images:
        t = stamp_ns(msg.header) - 1000
        assert msg.synthetic and msg.kind == "edited" and msg.header.frame_id == "front_optical"
        edited, region = image_to_numpy(msg.image), image_to_numpy(msg.region) > 0
        assert np.array_equal(edited[~region], clip.frames[t][~region])  # the source frame's pixels outside


def test_edit_video_goal_refuses_short_clips_and_untrackable_requests_and_stops_on_cancel(tiny_pipeline, clip):
    from vitron_ros.ros.video_editing import run_edit_video_goal

    handlers, factory = _handlers_with_frames(tiny_pipeline, clip, 1)
    result, outcome = run_edit_video_goal(handlers, _goal(factory, reply=_reply_for(clip)), factory, lambda: False,
                                          lambda f: None, lambda m: None)
    assert outcome == "aborted" and "clip too short" in result.answer.error
    handlers, factory = _handlers_with_frames(tiny_pipeline, clip, 4)
    result, outcome = run_edit_video_goal(handlers, _goal(factory, reply="<module>segmenter</module> x"), factory,
                                          lambda: False, lambda f: None, lambda m: None)
    assert outcome == "aborted" and "nothing to track" in result.answer.error
    result, _ = run_edit_video_goal(handlers, _goal(factory, camera="rear"), factory, lambda: False,
                                    lambda f: None, lambda m: None)
    assert "unknown camera 'rear'" in result.answer.error
    feedback = []
    result, outcome = run_edit_video_goal(handlers, _goal(factory, reply=_reply_for(clip)), factory,
                                          lambda: len(feedback) >= 1, feedback.append, lambda m: None)
    assert outcome == "canceled" and result.answer.error == "cancelled" and len(feedback) == 1
