"""The SAM segmenter with each prompt kind (tiny random SAM: shapes and plumbing, not quality)."""

import numpy as np
import pytest

from vitron_ros.core.errors import VitronInputError
from vitron_ros.core.specialists import Frame, SpecialistCall


@pytest.fixture(scope="module")
def segmenter(tiny_pipeline):
    return tiny_pipeline.specialists["segmenter"]


def _run(segmenter, image, **kwargs):
    (output,) = segmenter.run(Frame(image), [SpecialistCall(task="segmentation", **kwargs)])
    if isinstance(output, Exception):
        raise output
    return output


def _check(output, image, count):
    assert output.masks.shape == (count, *image.shape[:2]) and output.masks.dtype == bool
    assert output.scores.shape == (count,)
    assert np.all(np.diff(output.scores) <= 0), "best-scored mask first"


def test_point_box_mask_and_embedding_prompts(segmenter, scene):
    point = dict(points_xy=np.array([[60, 45]], np.float32), point_labels=np.array([1]))
    _check(_run(segmenter, scene, **point), scene, 3)
    _check(_run(segmenter, scene, box_xyxy=(30, 20, 90, 70)), scene, 3)
    mask = np.zeros(scene.shape[:2], bool)
    mask[20:70, 30:90] = True
    _check(_run(segmenter, scene, mask=mask), scene, 3)
    embedding = np.random.default_rng(0).standard_normal(segmenter.prompt_dim).astype(np.float32)
    _check(_run(segmenter, scene, embedding=embedding), scene, 3)
    _check(_run(segmenter, scene, box_xyxy=(30, 20, 90, 70), multimask=False), scene, 1)


def test_each_prompt_changes_the_decoder_input(segmenter, scene):
    """Every prompt kind really reaches SAM: adding it to a point prompt changes the predicted quality."""
    point = dict(points_xy=np.array([[60, 45]], np.float32), point_labels=np.array([1]))
    base = _run(segmenter, scene, **point).scores
    mask = np.zeros(scene.shape[:2], bool)
    mask[20:70, 30:90] = True
    embedding = np.random.default_rng(1).standard_normal(segmenter.prompt_dim).astype(np.float32)
    for extra in (dict(box_xyxy=(30, 20, 90, 70)), dict(mask=mask), dict(embedding=embedding)):
        assert not np.allclose(_run(segmenter, scene, **point, **extra).scores, base), extra


def test_everything_mode_returns_full_size_masks(segmenter, scene):
    (output,) = segmenter.run(Frame(scene), [SpecialistCall(task="everything")])
    assert len(output.masks) >= 1
    _check(output, scene, len(output.masks))
    assert output.labels[0] == "object 0"


def test_bad_prompts_are_reported_per_call(segmenter, scene):
    calls = [
        SpecialistCall(task="segmentation"),
        SpecialistCall(task="segmentation", box_xyxy=(10, 10, 500, 50)),
        SpecialistCall(task="segmentation", embedding=np.zeros(7, np.float32)),
        SpecialistCall(task="segmentation", points_xy=np.array([[5.0, 500.0]]), point_labels=np.array([1])),
        SpecialistCall(task="segmentation", mask=np.ones((3, 3), bool)),
        SpecialistCall(task="inpaint"),
        SpecialistCall(task="segmentation", box_xyxy=(30, 20, 90, 70)),
    ]
    outputs = segmenter.run(Frame(scene), calls)
    messages = [str(o) if isinstance(o, Exception) else None for o in outputs]
    assert "needs a prompt" in messages[0]
    assert "outside the 200x120 image" in messages[1]
    assert "signal embedding has width 7" in messages[2]
    assert "outside the 200x120 image" in messages[3]
    assert "mask prompt has shape (3, 3)" in messages[4]
    assert "no task 'inpaint'" in messages[5]
    assert messages[6] is None  # one bad call does not sink the others
    assert all(isinstance(o, VitronInputError) for o in outputs[:6])


def test_a_frame_is_encoded_once_for_all_its_calls(segmenter, scene, monkeypatch):
    encoder_calls = []
    original = segmenter.sam.image_encoder.forward
    monkeypatch.setattr(segmenter.sam.image_encoder, "forward", lambda x: encoder_calls.append(1) or original(x))
    frame = Frame(scene)
    segmenter.run(frame, [SpecialistCall("segmentation", box_xyxy=(30, 20, 90, 70))])
    segmenter.run(frame, [SpecialistCall("segmentation", box_xyxy=(120, 60, 180, 110))] * 2)
    assert len(encoder_calls) == 1
    segmenter.run(Frame(scene), [SpecialistCall("segmentation", box_xyxy=(30, 20, 90, 70))])
    assert len(encoder_calls) == 2


def test_everything_mode_is_bounded_in_memory_at_any_input_size(segmenter, monkeypatch):
    """A 4000x3000 photo: the grid runs on the image scaled to everything_max_side, in points_per_batch batches,
    so the largest tensor no longer grows with the input (it was 64 x 3 x 4000 x 3000 float32 = 9.2 GB)."""
    from segment_anything import SamPredictor

    seen = {"image": None, "largest": 0}
    real_predict = SamPredictor.predict_torch

    def recording(self, *args, **kwargs):
        masks, iou, low = real_predict(self, *args, **kwargs)
        seen["largest"] = max(seen["largest"], masks.numel() * masks.element_size())
        return masks, iou, low

    real_set = SamPredictor.set_image
    monkeypatch.setattr(SamPredictor, "predict_torch", recording)
    monkeypatch.setattr(SamPredictor, "set_image", lambda self, image, *a, **k: (seen.update(image=image.shape),
                                                                                 real_set(self, image, *a, **k))[1])
    photo = np.zeros((3000, 4000, 3), np.uint8)
    photo[1000:2000, 1000:2500] = (200, 40, 40)
    (output,) = segmenter.run(Frame(photo), [SpecialistCall(task="everything")])
    assert not isinstance(output, Exception), output
    cfg = segmenter.config
    assert max(seen["image"][:2]) == cfg.everything_max_side
    assert seen["largest"] <= cfg.points_per_batch * 3 * cfg.everything_max_side**2 * 4
    assert output.masks.shape[1:] == (3000, 4000) and output.masks.dtype == bool
