"""The shipped `shapes` profile: it loads through the ordinary profile code, answers, segments, and scores."""

import json

import numpy as np
import pytest

from vitron_lab.cli import main as lab_main
from vitron_lab.shapes.world import generate_scene
from vitron_ros.cli import main
from vitron_ros.core.image_io import load_image

from .conftest import REPO

# assets/shapes_scene.png is generate_scene(DEMO_SEED): a held-out seed (no eval draws it), fixed with these requests
# before the checkpoint it is shown with was trained: the first seed of the range, not one picked for its answers
DEMO_SEED = 2_050_000_000
DEMO_REQUEST = "can you segment the yellow triangle below the blue square?"
DEMO_EDIT = "make the blue square red."
DEMO_EDIT_REPLY = "<module>editor</module> <instruction>recolour: the blue square to red</instruction> [SEG]"
TRACK_CLIP_SEED = 2_000_000_683  # held-out, three shapes
# Floors under what the shipped models measure (this clip's J&F 0.51; the 6-clip suite: VOS J&F 0.53 on its clips of
# two to four shapes, clip answers 0.71) and far above what an untrained tracker or a stage-5 LLM give (clip answers 0.00).
TRACK_CLIP_FLOOR = 0.40
VIDEO_VOS_FLOOR = 0.40
VIDEO_QA_FLOOR = 0.30
# Share of the other objects' pixels a track covers: 0.35 on the test's 6 clips (0.33 on 40); the tracker before
# its memory priors covered 0.80, segmenting every shape in view whatever it was prompted with.
TRACK_OTHERS_COVERED_CEILING = 0.55
# The edit suite on 3 held-out scenes (given invocations): the 40-scene figures are removal L1 in region 0.06 and
# removal success 0.89 (README); a random-weight editor leaves grey noise (L1 ~0.3).
EDIT_SCENES = 3
EDIT_REMOVE_L1_CEILING = 0.12
EDIT_REMOVE_FLOOR = 0.5


@pytest.fixture(scope="module")
def shapes_pipeline_shipped():
    from vitron_ros.core.pipeline import VitronPipeline

    return VitronPipeline.from_profile("shapes", progress=lambda *_: None)


def test_shipped_checkpoint_is_small():
    def size(folder):
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert files, f"{folder} is missing: train it with `vitron-lab train --stage all --config lab/config/train_shapes.yaml`"
        return sum(p.stat().st_size for p in files)

    shapes = REPO / "models" / "shapes"
    assert size(shapes) - size(shapes / "diffusion") <= 20 * 1024 * 1024  # LLM, SAM and SAM 2
    assert size(shapes / "diffusion") <= 30 * 1024 * 1024  # the generator/editor with its signal projector


def test_demo_scene_is_the_generator_scene():
    assert np.array_equal(load_image(REPO / "assets" / "shapes_scene.png"), generate_scene(DEMO_SEED).image)


def test_demo_requests_on_the_fixed_scene(shapes_pipeline_shipped):
    """The demo's scene and requests were fixed before this checkpoint was trained, so the demo shows what the model
    does on a scene nobody picked: it counts the four objects, and it answers the relational request with a valid
    segmenter invocation whose [SEG] signal alone prompts SAM, but it miscopies the phrase ("the yellow square below
    the blue triangle") and the mask misses the triangle (IoU 0.14; README). Four-object scenes score 0.28 cIoU in
    the eval; this test pins the demo's behaviour, not a quality it lacks."""
    from vitron_ros.core.results import SOURCE_EMBEDDING

    scene = generate_scene(DEMO_SEED)
    triangles = sorted((o for o in scene.objects if o.name == "yellow triangle"), key=lambda o: o.centre_xy[1])
    square = next(o for o in scene.objects if o.name == "blue square")
    assert len(triangles) == 2 and triangles[0].centre_xy[1] < square.centre_xy[1] < triangles[1].centre_xy[1]
    answer, _ = shapes_pipeline_shipped(scene.image, "how many objects are there?")
    assert answer.answer.strip() == str(len(scene.objects)) == "4"
    result, _ = shapes_pipeline_shipped(scene.image, DEMO_REQUEST)
    assert not result.errors, result.errors
    assert [(i.module, i.task, i.box_xyxy) for i in result.invocations] == [("segmenter", "segmentation", None)]
    assert [m.source for m in result.masks] == [SOURCE_EMBEDDING] and result.masks[0].mask.any()


def test_the_shipped_segmenter_is_prompted_by_the_signal_alone(shapes_pipeline_shipped, monkeypatch):
    """The shipped LLM's facts say its segmenter finds the object from the [SEG] signal alone (box_prompt false), so a
    <Region> box in a reply, which a published VITRON checkpoint would pass on beside the signal, is reported but
    does not reach SAM."""
    from vitron_ros.core.model.facts import read_facts
    from vitron_ros.core.results import SOURCE_EMBEDDING

    assert read_facts(shapes_pipeline_shipped.llm.config.model).box_prompt is False
    assert shapes_pipeline_shipped.llm.box_prompt is False
    calls = []
    run = shapes_pipeline_shipped.run_specialist
    monkeypatch.setattr(shapes_pipeline_shipped, "run_specialist",
                        lambda name, frame, batch: calls.extend(batch) or run(name, frame, batch))
    scene = generate_scene(DEMO_SEED)
    reply = ("<module>segmenter</module> <instruction>segmentation: the blue triangle</instruction> "
             "<Region>[0.00, 0.00, 0.15, 0.15]</Region> [SEG]")
    result = shapes_pipeline_shipped.ground_reply(scene.image, "segment the blue triangle.", reply)
    assert not result.errors and [m.source for m in result.masks] == [SOURCE_EMBEDDING]
    assert result.invocations[0].box_xyxy is not None and result.masks[0].mask.any()
    assert [(c.box_xyxy, c.embedding is not None) for c in calls] == [(None, True)]


@pytest.mark.slow
def test_eval_suite_on_the_shipped_checkpoint(shapes_pipeline_shipped):
    """A small held-out run: every metric is present, and the model is far above chance (not a random model)."""
    from vitron_lab.evaluation.shapes_suite import evaluate_shapes, format_report

    report = evaluate_shapes(shapes_pipeline_shipped, scenes=20)
    # Floors well under the 200-scene figures (validity 1.00, cIoU 0.34, VQA 0.50, region 0.54) and far above
    # what random weights give (no valid invocation, cIoU ~0, VQA ~0): a broken export or loader fails here.
    assert report["invocation_validity"]["rate"] >= 0.9
    assert report["referring"]["all"]["ciou"] >= 0.15
    assert report["vqa"]["overall"]["accuracy"] >= 0.3
    assert report["region"]["overall"]["accuracy"] >= 0.3
    # scenes come in equal numbers of one to five objects, and every figure is also reported per count
    assert {n: r["vqa"]["overall"]["n"] > 0 for n, r in report["by_objects"].items()} == dict.fromkeys("12345", True)
    assert sum(r["region"]["overall"]["n"] for r in report["by_objects"].values()) == report["region"]["overall"]["n"] == 20
    one = report["by_objects"]["1"]
    assert one["referring"]["all"]["n"] == 4 and one["referring"]["relational"]["n"] == 0  # one object: no relation
    table = format_report(report, baseline=report)
    for heading in ("referring segmentation", "attribute", "relational", "VQA accuracy", "invocation validity",
                    "grounded conversation", "region understanding", "by object count", "5 obj"):
        assert heading in table
    vqa = report["vqa"]["overall"]["accuracy"]
    assert f"{vqa:.3f} / {vqa:.3f}" in table  # the baseline's figure next to this run's


def test_cli_eval_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "report.json"
    assert lab_main(["eval", "--suite", "shapes", "--scenes", "2", "--json", str(out)]) == 0
    assert "referring segmentation" in capsys.readouterr().out
    assert json.loads(out.read_text())["scenes"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--stage", "bogus", "--config", str(REPO / "lab" / "config" / "train_shapes.yaml")], "--stage 'bogus'"),
        (["train", "--stage", "all", "--config", "/nonexistent/recipe.yaml"], "cannot read training recipe"),
        (["eval", "--suite", "coco"], "invalid choice: 'coco'"),
        (["eval", "--suite", "shapes", "--baseline", "/nonexistent/report.json"], "not a readable JSON report"),
    ],
)
def test_cli_train_and_eval_errors_are_one_line(argv, message, capsys):
    assert lab_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_trained_tracker_follows_a_shape_through_a_video_the_test_writes(tmp_path, capsys):
    """A held-out clip as a lossless video file, streamed by `vitron track` from a box on the first frame."""
    import cv2

    from vitron_lab.evaluation.davis import score_sequence
    from vitron_lab.shapes.world import generate_clip
    from vitron_ros.core.masks import mask_to_box, rle_decode

    clip = generate_clip(TRACK_CLIP_SEED, frames=20)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 10.0, (64, 64))
    for frame in clip.frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    target = int(np.argmax([m.sum() for m in clip.masks[0]]))
    box = ",".join(f"{v:g}" for v in mask_to_box(clip.masks[0][target]))
    out = tmp_path / "out"
    assert main(["track", str(video), "--track-box", box, "--profile", "shapes", "--out", str(out)]) == 0
    lines = [json.loads(line) for line in (out / "tracks.jsonl").read_text().splitlines()]
    masks = [rle_decode(line["objects"][0]["rle"]) for line in lines]
    score = score_sequence(masks, [clip.masks[t][target] for t in range(20)])
    assert score.j_and_f >= TRACK_CLIP_FLOOR, score


def test_video_suite_on_the_shipped_checkpoint(shapes_pipeline_shipped):
    from vitron_lab.evaluation.video_suite import evaluate_video, format_video_report

    report = evaluate_video(shapes_pipeline_shipped, clips=6, frames=12)
    # Floors well under the 40-clip figures (README) and far above random weights (J&F ~0, clip answers 0).
    assert report["vos"]["j_and_f"] >= VIDEO_VOS_FLOOR and report["vos"]["objects"] > 6
    assert report["clip_qa"]["accuracy"] >= VIDEO_QA_FLOOR
    assert report["vos"]["other_objects_covered"] <= TRACK_OTHERS_COVERED_CEILING, report["vos"]
    table = format_video_report(report)
    assert "semi-supervised VOS" in table and "clip questions" in table and "other objects covered" in table


def test_cli_video_eval_and_its_errors(tmp_path, capsys):
    out = tmp_path / "video.json"
    assert lab_main(["eval", "--suite", "video", "--clips", "1", "--frames", "6", "--json", str(out)]) == 0
    assert "J&F" in capsys.readouterr().out and json.loads(out.read_text())["clips"] == 1
    assert lab_main(["eval", "--suite", "video", "--frames", "2"]) == 2
    assert "--frames >= 3" in capsys.readouterr().err


def test_demo_edit_recolours_the_object_and_nothing_else(tmp_path, capsys):
    """The demo's edit (scripts/demo.sh) through `vitron edit` on the shipped profile: the square turns red, every
    pixel outside the edited region is the input's."""
    from vitron_lab.shapes.edits import colour_mask
    from vitron_ros.core.masks import rle_decode

    scene = generate_scene(DEMO_SEED)
    target = next(o for o in scene.objects if o.name == "blue square")
    demo = (REPO / "scripts" / "demo.sh").read_text()
    assert DEMO_EDIT_REPLY in demo and DEMO_EDIT in demo and DEMO_REQUEST in demo
    out = tmp_path / "edit"
    assert main(["edit", str(REPO / "assets" / "shapes_scene.png"), DEMO_EDIT, "--reply", DEMO_EDIT_REPLY,
                 "--profile", "shapes", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert [i["synthetic"] for i in result["images"]] == [True]
    edited = load_image(out / "edited.png")
    assert np.array_equal(load_image(out / "before.png"), scene.image)
    region = rle_decode(result["images"][0]["region_rle"])
    assert np.array_equal(edited[~region], scene.image[~region])  # composited: outside pixels are the input's
    assert region[target.mask].mean() >= 0.85  # the segmenter found the square
    assert colour_mask(edited, "red")[target.mask].mean() >= 0.6  # and it is red (0.78 measured)


@pytest.mark.slow
def test_edit_suite_on_the_shipped_checkpoint(tmp_path, capsys):
    """A small held-out run of `vitron eval --suite edit`: floors well under the 50-scene figures (README), far above
    what an untrained editor gives."""
    out = tmp_path / "edit.json"
    assert lab_main(["eval", "--suite", "edit", "--scenes", str(EDIT_SCENES), "--no-ablation", "--json", str(out)]) == 0
    assert "| recolour | given |" in capsys.readouterr().out
    report = json.loads(out.read_text())
    for task in ("remove", "recolour", "replace", "move", "add", "layout"):
        for way in ("given", "end_to_end"):
            assert report[task][way]["n"] == 0 or report[task][way]["outside_max"] == 0, (task, way)
    assert report["remove"]["given"]["l1_region"] <= EDIT_REMOVE_L1_CEILING
    # the given invocation is grounded by its [SEG] signal alone, which often picks the wrong object in a recolour
    # (40 scenes: recolour 0.39, remove 0.89), so the floor is on the removal
    assert report["remove"]["given"]["success"] >= EDIT_REMOVE_FLOOR
    assert report["add"]["given"]["produced"] == report["layout"]["given"]["produced"] == 1.0
