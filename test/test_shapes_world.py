"""ShapesWorld: determinism, exact masks and boxes, and instruction data the parser reads as intended."""

import numpy as np
import pytest

from vitron_lab.shapes.instructions import (
    RELATIONS,
    TASKS,
    InstructionMaker,
    holds,
    make_sample,
    normalise_answer,
)
from vitron_lab.shapes.world import COLOURS, MIN_VISIBLE, generate_clip, generate_scene
from vitron_ros.core.invocation import parse_reply
from vitron_ros.core.masks import mask_to_box
from vitron_ros.core.specialists import SPECIALISTS


def test_same_seed_same_scene_and_different_seeds_differ():
    a, b, c = generate_scene(11), generate_scene(11), generate_scene(12)
    assert np.array_equal(a.image, b.image)
    assert [o.spec for o in a.objects] == [o.spec for o in b.objects]
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a.objects, b.objects, strict=True))
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("seed", range(40))
def test_masks_boxes_and_pixels_agree(seed):
    scene = generate_scene(seed)
    union = np.zeros(scene.image.shape[:2], int)
    for obj in scene.objects:
        assert obj.mask.any() and not (obj.mask & ~obj.full_mask).any()  # visible part of the shape only
        assert obj.mask.sum() >= MIN_VISIBLE * obj.full_mask.sum()  # partial occlusion, never hidden
        assert obj.box_xyxy == mask_to_box(obj.mask)
        assert (scene.image[obj.mask] == COLOURS[obj.spec.colour]).all()  # every mask pixel shows its colour
        union += obj.mask
    assert union.max() <= 1  # visible masks never overlap


def test_scenes_have_occlusion_and_every_background():
    scenes = [generate_scene(s) for s in range(200)]
    assert {s.background for s in scenes} == {"plain", "striped", "checkered", "noisy"}
    occluded = sum(any((o.full_mask & ~o.mask).any() for o in s.objects) for s in scenes)
    assert occluded > 10
    assert {o.spec.shape for s in scenes for o in s.objects} == {"circle", "square", "triangle"}


def test_scene_renders_the_same_geometry_at_another_size():
    small, large = generate_scene(4, size=64), generate_scene(4, size=256)
    assert [o.spec for o in small.objects] == [o.spec for o in large.objects]
    for s, big in zip(small.objects, large.objects, strict=True):
        assert abs(big.area / 16 - s.area) <= 0.25 * s.area + 8


def test_clip_moves_shapes_and_keeps_masks_per_frame():
    clip = generate_clip(3, frames=6)
    again = generate_clip(3, frames=6)
    assert len(clip.frames) == len(clip.masks) == len(clip.tracks) == 6
    assert all(np.array_equal(a, b) for a, b in zip(clip.frames, again.frames, strict=True))
    assert all(len(m) == len(clip.specs) for m in clip.masks)
    assert clip.tracks[0] != clip.tracks[-1]
    for frame, masks in zip(clip.frames, clip.masks, strict=True):
        for spec, mask in zip(clip.specs, masks, strict=True):
            assert (frame[mask] == COLOURS[spec.colour]).all()


def test_twin_clips_hold_look_alike_shapes_that_move_apart():
    for seed in range(10):
        clip = generate_clip(seed, frames=4, twins=True)
        assert len(clip.specs) >= 2 and len({(s.colour, s.shape) for s in clip.specs}) == 1
        assert len({s.extent for s in clip.specs}) == len(clip.specs)  # sizes still differ: the rest is position


@pytest.mark.parametrize("seed", range(30))
def test_referring_phrases_single_out_their_object(seed):
    scene = generate_scene(seed)
    maker = InstructionMaker(scene, np.random.default_rng(seed))
    for index in range(len(scene.objects)):
        named = maker.referring_phrase(index)
        if named is None:
            continue
        phrase, kind = named
        words = phrase.split()
        colour, shape = words[1], words[2]
        matching = [i for i, o in enumerate(scene.objects) if (o.spec.colour, o.spec.shape) == (colour, shape)]
        if kind == "attribute":
            assert matching == [index]
            continue
        relation = next(r for r in RELATIONS if f" {r} " in phrase)
        anchor_words = phrase.split(f" {relation} ")[1].split()
        anchor = next(i for i, o in enumerate(scene.objects) if (o.spec.colour, o.spec.shape) == tuple(anchor_words[1:3]))
        satisfied = [i for i in matching if holds(relation, scene.objects[i], scene.objects[anchor], scene.size)]
        assert satisfied == [index]


def test_training_replies_parse_into_the_intended_invocations():
    modules = {name: frozenset(entry.tasks) for name, entry in SPECIALISTS.items()}  # edits and layouts too
    rng = np.random.default_rng(0)
    seen = set()
    for seed in range(60):
        scene = generate_scene(seed)
        for task in TASKS:
            sample = make_sample(scene, task, rng, attempts=3)
            if sample is None:
                continue
            seen.add(task)
            parsed = parse_reply(sample.reply, scene.image.shape[:2], modules, "normalized")
            assert not parsed.errors, (sample.reply, parsed.errors)
            assert parsed.seg_count == len(sample.seg_targets)
            if task == "referring":
                (call,) = parsed.invocations
                assert call.task == "segmentation" and call.instruction == sample.answer
                assert call.box_xyxy is None and call.seg_index == 0  # the [SEG] signal alone says which object
            if task == "grounded":
                assert len(parsed.invocations) == len(scene.objects)
    assert seen == set(TASKS)


def test_vqa_answers_are_the_scene_truth():
    for seed in range(30):
        scene = generate_scene(seed)
        maker = InstructionMaker(scene, np.random.default_rng(seed))
        sample = maker._vqa("count")
        if sample.request == "how many objects are there?":
            assert sample.answer == str(len(scene.objects))
        sample = maker._vqa("shape")
        if sample is not None:
            colour = sample.request.split()[-2]
            assert [o.spec.shape for o in scene.objects if o.spec.colour == colour] == [sample.answer]


def test_normalise_answer():
    assert normalise_answer("A red circle.") == "red circle"
    assert normalise_answer("  The blue  Square ") == "blue square"
    assert normalise_answer("3") == "3"
