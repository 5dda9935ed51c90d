"""The live-stream tracker: object lifecycle, state machine, bounded memory and bad inputs.

Uses the tiny profile's random-weight SAM 2, loaded through the published-checkpoint path. Random weights give
object-score logits near 0 on tracked frames, while a mask prompt's frame gets exactly +10 (SAM 2 copies a mask
prompt with logit 20 * 1 - 10): with presence_threshold 5 a prompted frame is visible and every other frame is
not, which drives the state machine deterministically.
"""

import dataclasses

import numpy as np
import pytest

from vitron_ros.core.errors import VitronInputError
from vitron_ros.core.tracking.state import ObjectPrompt, ObjectStatus
from vitron_ros.core.tracking.stream_tracker import StreamTracker

H, W = 48, 80


@pytest.fixture(scope="module")
def sam2(tiny_profile):
    from vitron_ros.core.model.sam2_loader import load_sam2_video

    return load_sam2_video(tiny_profile.section("tracker").model)


def _tracker(sam2, tiny_profile, grounder=None, **config) -> StreamTracker:
    model, processor = sam2
    cfg = dataclasses.replace(tiny_profile.section("tracker"), **config)
    return StreamTracker(model, processor, cfg, grounder=grounder)


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(n):
        image = np.full((H, W, 3), 90, np.uint8)
        x = 10 + 2 * t % 40
        image[10:30, x : x + 16] = (220, 40, 40)
        frames.append(np.clip(image + rng.integers(0, 8, image.shape), 0, 255).astype(np.uint8))
    return frames


def _square_mask() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[10:30, 10:26] = True
    return mask


def test_state_machine_tracks_occludes_loses_and_reacquires_from_the_request(sam2, tiny_profile):
    calls = []

    def grounder(image, request):
        calls.append(request)
        return _square_mask(), 0.9

    tracker = _tracker(sam2, tiny_profile, grounder, presence_threshold=5.0, lost_after=3, reacquire_interval=4)
    object_id = tracker.add_object(ObjectPrompt(request="the red box"))
    states = [tracker.step(frame).by_id(object_id) for frame in _frames(12)]
    statuses = [s.status for s in states]
    T, O, L = ObjectStatus.TRACKED, ObjectStatus.OCCLUDED, ObjectStatus.LOST
    # frame 0: grounded and prompted; 1-3 unseen, within lost_after (occluded); 4 lost. Frame 5 is the first
    # frame that starts lost, 5 frames after the last grounding (>= interval 4): re-grounded, tracked again.
    assert statuses == [T, O, O, O, L, T, O, O, O, L, T, O]
    assert len(calls) == 3 and [i for i, s in enumerate(states) if s.prompted] == [0, 5, 10]
    assert states[5].frames_unseen == 0 and states[4].frames_unseen == 4
    # the prompt mask comes back through SAM 2's square resampling: the same box, a few edge pixels apart
    assert (states[0].mask & _square_mask()).sum() / (states[0].mask | _square_mask()).sum() > 0.95
    assert states[0].box_xyxy == (10.0, 10.0, 26.0, 30.0)
    assert states[2].frames_unseen == 2 and not states[2].mask.any() and states[2].box_xyxy is None
    assert all(s.label == "the red box" for s in states)


def test_lost_object_whose_request_is_not_found_stays_lost_and_says_so(sam2, tiny_profile):
    answers = iter([(_square_mask(), 0.9)] + [None] * 10)
    tracker = _tracker(sam2, tiny_profile, lambda image, request: next(answers), presence_threshold=5.0,
                       lost_after=1, reacquire_interval=2)
    object_id = tracker.add_object(ObjectPrompt(request="the red box"))
    results = [tracker.step(frame) for frame in _frames(6)]
    assert results[2].by_id(object_id).status is ObjectStatus.LOST
    assert any("not found in frame" in e for r in results for e in r.errors)
    assert results[-1].by_id(object_id).status is ObjectStatus.LOST


def test_grounder_failure_is_reported_and_the_stream_goes_on(sam2, tiny_profile):
    def broken(image, request):
        raise RuntimeError("LLM unavailable")

    tracker = _tracker(sam2, tiny_profile, broken)
    request_id = tracker.add_object(ObjectPrompt(request="the red box"))
    box_id = tracker.add_object(ObjectPrompt(box_xyxy=(10, 10, 26, 30)))
    tracks = tracker.step(_frames(1)[0])
    assert tracks.by_id(request_id).status is ObjectStatus.LOST
    assert tracks.by_id(box_id).prompted and tracks.by_id(box_id).label == "box"
    assert any("LLM unavailable" in e for e in tracks.errors)


def test_objects_join_and_leave_a_running_stream_with_stable_ids(sam2, tiny_profile):
    tracker = _tracker(sam2, tiny_profile)
    frames = _frames(8)
    first = tracker.add_object(ObjectPrompt(mask=_square_mask()))
    tracker.step(frames[0])
    second = tracker.add_object(ObjectPrompt(points_xy=np.array([[18.0, 20.0]]), point_labels=np.array([1])))
    both = tracker.step(frames[1])
    assert [s.object_id for s in both.objects] == [first, second] and both.by_id(second).prompted
    tracker.remove_object(first)
    after = tracker.step(frames[2])
    assert [s.object_id for s in after.objects] == [second]
    third = tracker.add_object(ObjectPrompt(box_xyxy=(10, 10, 26, 30)))
    assert third not in (first, second)  # ids are never reused
    named = tracker.add_object(ObjectPrompt(mask=_square_mask()), object_id="mug")
    last = tracker.step(frames[3])
    assert [s.object_id for s in last.objects] == [second, third, named] and last.frame_index == 3


def test_memory_stays_bounded_however_long_the_stream(sam2, tiny_profile):
    tracker = _tracker(sam2, tiny_profile, memory_window=4, max_conditioning_frames=2)
    assert tracker.memory_window == max(4, sam2[0].config.num_maskmem, sam2[0].config.max_object_pointers_in_encoder)
    object_id = tracker.add_object(ObjectPrompt(mask=_square_mask()))
    frames = _frames(60)
    for t, frame in enumerate(frames):
        if t in (20, 35, 50):  # re-prompting adds conditioning frames; only the first and the newest stay
            tracker.state.objects[object_id].pending = ObjectPrompt(mask=_square_mask())
        tracker.step(frame)
    session = tracker.state.objects[object_id].session
    outputs = session.output_dict_per_obj[0]
    assert len(session.processed_frames) == 1
    assert len(outputs["non_cond_frame_outputs"]) <= tracker.memory_window
    assert sorted(outputs["cond_frame_outputs"]) == [0, 50]
    assert len(session.frames_tracked_per_obj[0]) <= tracker.memory_window
    assert all(len(inputs) == 0 for inputs in session.mask_inputs_per_obj.values())


def test_bad_inputs_give_clear_errors_and_the_stream_survives(sam2, tiny_profile):
    tracker = _tracker(sam2, tiny_profile)  # no grounder
    frames = _frames(3)
    with pytest.raises(VitronInputError, match="no grounder"):
        tracker.add_object(ObjectPrompt(request="the red box"))
    object_id = tracker.add_object(ObjectPrompt(box_xyxy=(10, 10, 26, 30)))
    tracker.step(frames[0])
    with pytest.raises(VitronInputError, match=r"unknown object id 'nope'; tracked ids: obj1"):
        tracker.remove_object("nope")
    with pytest.raises(VitronInputError, match="frame is 40x30 but this stream's frames are 80x48"):
        tracker.step(np.zeros((30, 40, 3), np.uint8))
    with pytest.raises(VitronInputError, match="lies outside the 80x48 image"):
        tracker.add_object(ObjectPrompt(box_xyxy=(10, 10, 200, 30)))
    with pytest.raises(VitronInputError, match="mask prompt is 10x10, frames are 80x48"):
        tracker.add_object(ObjectPrompt(mask=np.ones((10, 10), bool)))
    with pytest.raises(VitronInputError, match="empty prompt"):
        tracker.add_object(ObjectPrompt())
    with pytest.raises(VitronInputError, match="already tracked"):
        tracker.add_object(ObjectPrompt(box_xyxy=(1, 1, 5, 5)), object_id=object_id)
    with pytest.raises(VitronInputError, match="frame must be uint8"):
        tracker.step(frames[1].astype(np.float32))
    # None of that touched the stream: the next good frame is frame 1, with the same object.
    tracks = tracker.step(frames[1])
    assert tracks.frame_index == 1 and [s.object_id for s in tracks.objects] == [object_id]


def test_empty_request_is_refused_even_with_a_grounder(sam2, tiny_profile):
    tracker = _tracker(sam2, tiny_profile, lambda image, request: None)
    with pytest.raises(VitronInputError, match="request to track is empty"):
        tracker.add_object(ObjectPrompt(request="   "))
    with pytest.raises(VitronInputError, match="not both"):
        tracker.add_object(ObjectPrompt(request="the mug", box_xyxy=(1, 1, 5, 5)))
    with pytest.raises(VitronInputError, match="point labels must be 1"):
        tracker.add_object(ObjectPrompt(points_xy=np.array([[1.0, 1.0]]), point_labels=np.array([2])))


def test_a_prompt_that_does_not_fit_the_first_frame_is_dropped_with_a_reason(sam2, tiny_profile):
    tracker = _tracker(sam2, tiny_profile)
    far = tracker.add_object(ObjectPrompt(box_xyxy=(10, 10, 500, 30)))  # no frame yet: the size is unknown
    near = tracker.add_object(ObjectPrompt(box_xyxy=(10, 10, 26, 30)))
    tracks = tracker.step(_frames(1)[0])
    assert [s.object_id for s in tracks.objects] == [near] and tracker.object_ids == [near]
    assert tracks.errors == [f"{far} removed: box (10, 10, 500, 30) lies outside the 80x48 image"]


def test_a_built_tiny_sam2_encodes_prompts_in_the_image_positional_frame(tmp_path):
    """As converted SAM 2 checkpoints do: one random Fourier matrix for the image positions and the prompts' (two
    independent ones left the shapes tracker blind to its box and point prompts)."""
    import torch
    from safetensors.torch import load_file

    from vitron_lab.tiny_sam2 import build_tiny_sam2

    build_tiny_sam2(tmp_path / "sam2", image_size=128, progress=lambda *_: None)
    weights = load_file(tmp_path / "sam2" / "model.safetensors")
    image, prompts = (weights["shared_image_embedding.positional_embedding"],
                      weights["prompt_encoder.shared_embedding.positional_embedding"])
    assert torch.equal(image, prompts) and image.abs().sum() > 0


def test_the_decoder_prompt_prior_makes_a_fresh_sam2_read_where_its_box_is(tmp_path):
    """From transformers' init the decoder's first self-attention makes every token the same vector, so a box's
    position does not reach the mask at all (measured: exactly no change); with `decoder_prompt_prior` boxes at
    opposite corners already give different masks before any training (which then grows the difference to 5-13)."""
    import torch
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    from vitron_lab.tiny_sam2 import build_tiny_sam2
    from vitron_lab.training.tracker_training import TrackerTrainConfig, initialise_memory_path
    from vitron_ros.core.model.sam2_loader import load_sam2_video

    build_tiny_sam2(tmp_path / "fresh", image_size=128, progress=lambda *_: None)
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)

    def box_effect(prior: bool) -> float:
        model, processor = load_sam2_video(str(tmp_path / "fresh"))
        initialise_memory_path(model, TrackerTrainConfig(decoder_prompt_prior=prior))
        pixels = processor(images=image, return_tensors="pt").pixel_values[0]
        masks = []
        for box in ([0.0, 0.0, 20.0, 20.0], [44.0, 44.0, 64.0, 64.0]):
            session = Sam2VideoInferenceSession(video_height=64, video_width=64, dtype=torch.float32)
            processor.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=[1], input_boxes=[[box]],
                                                      original_size=(64, 64))
            masks.append(model(inference_session=session, frame=pixels, frame_idx=0).pred_masks)
        if prior:
            first = model.mask_decoder.transformer.layers[0].self_attn
            assert torch.equal(first.v_proj.weight, torch.eye(first.v_proj.weight.shape[0]))
            last = model.mask_decoder.transformer.final_attn_token_to_image
            assert torch.equal(last.q_proj.weight, last.k_proj.weight)
        return (masks[0] - masks[1]).abs().max().item()

    plain, primed = box_effect(False), box_effect(True)
    assert plain < 1e-5 and primed > 1e-3, (plain, primed)


def test_the_distractor_loss_is_the_probability_a_track_gives_the_other_objects():
    import torch

    from vitron_lab.training.tracker_training import _covered_loss

    target, other = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    target[:4, :4], other[4:, 4:] = True, True
    truth = torch.as_tensor(target, dtype=torch.float32)[None, None]
    everything, on_target = torch.full((1, 1, 8, 8), 20.0), torch.where(truth > 0, 20.0, -20.0)
    assert _covered_loss(everything, truth, [target, other]).item() == pytest.approx(1.0)  # covers the other fully
    assert _covered_loss(on_target, truth, [other]).item() == pytest.approx(0.0, abs=1e-6)
    half = on_target.clone()
    half[..., 4:6, 4:] = 20.0  # half of the other object's rows
    assert _covered_loss(half, truth, [other]).item() == pytest.approx(0.5)
    assert _covered_loss(everything, truth, []).item() == 0.0  # no other object in view: nothing to charge
    # at the logits' lower resolution the other mask is area-averaged; where it overlaps the target it is not charged
    assert _covered_loss(torch.full((1, 1, 4, 4), 20.0), truth[..., ::2, ::2], [target]).item() == 0.0


def test_tracker_training_starts_with_its_memory_priors_and_saves_a_loadable_model(tmp_path):
    """`vitron train --stage tracker` in miniature: the priors are in place before the first update, the
    feature-scale penalty is part of the loss, and the saved folder loads through the published-checkpoint path."""
    import torch

    from vitron_lab.tiny_sam2 import build_tiny_sam2
    from vitron_lab.training.tracker_training import (
        TrackerTrainConfig,
        TrackerTrainer,
        initialise_memory_path,
        train_tracker,
    )
    from vitron_ros.core.model.sam2_loader import load_sam2_video

    config = TrackerTrainConfig(steps=2, clips_per_step=1, clip_frames=3, min_objects=2, max_objects=2,
                                twin_share=1.0, feature_penalty=0.1, feature_rms=0.0, mask_memory_gain=10.0,
                                memory_locality=6.0, locality_pairs=2, warmup_steps=1, log_every=1)
    build_tiny_sam2(tmp_path / "fresh", image_size=128)
    model, processor = load_sam2_video(str(tmp_path / "fresh"))
    mask_weight = model.memory_encoder.mask_downsampler.final_conv.weight.clone()
    pixel_weight = model.memory_encoder.feature_projection.weight.clone()
    initialise_memory_path(model, config)
    assert torch.allclose(model.memory_encoder.mask_downsampler.final_conv.weight, mask_weight * 10)
    assert torch.allclose(model.memory_encoder.feature_projection.weight, pixel_weight / 10)
    for layer in model.memory_attention.layers:
        attention = layer.cross_attn_image
        half = attention.head_dim // 2
        expected = torch.zeros(attention.head_dim)
        expected[[0, 2, half, half + 2]] = 6.0  # the two fastest rotary pairs of each axis
        assert torch.equal(attention.q_proj.bias, expected) and torch.equal(attention.k_proj.bias, expected)
    # With feature_rms 0 the penalty is 0.1 x the features' mean square: the same clip's loss grows by it.
    trainer = TrackerTrainer(model, processor, config)
    with_penalty = trainer._clip_loss(np.random.default_rng(0), 0)
    plain = TrackerTrainer(model, processor, dataclasses.replace(config, feature_penalty=0.0))
    without = plain._clip_loss(np.random.default_rng(0), 0)
    assert with_penalty.item() > without.item()
    config = dataclasses.replace(config, image_steps=1, image_batch=2, distractor_weight=1.0, decoder_prompt_prior=True)
    report = train_tracker(tmp_path / "trained", config, image_size=128, progress=lambda *_: None)
    assert report["steps"] == 2 and np.isfinite(report["loss_last"])
    assert report["image_steps"] == 1 and np.isfinite(report["image_loss_last"])  # the still-image phase ran
    trained, _ = load_sam2_video(str(tmp_path / "trained"))
    bias = trained.memory_attention.layers[0].cross_attn_image.q_proj.bias
    assert not torch.equal(bias, expected) and torch.allclose(bias, expected, atol=0.1)  # the prior, moved by training
