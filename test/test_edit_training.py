"""ShapesWorld edits with exact truths, the diffusion and signal training stages, the edit suite and its ablation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from vitron_lab.shapes.edits import EDIT_TASKS, edit_case, layout_case, read_edit, read_shape
from vitron_lab.shapes.instructions import edit_reply, make_sample
from vitron_lab.shapes.world import ShapeSpec, draw_shape, generate_scene
from vitron_ros.core.config import RuntimeConfig
from vitron_ros.core.errors import VitronInputError
from vitron_ros.core.invocation import parse_reply
from vitron_ros.core.specialists import SpecialistCall

MODULES = {"segmenter": {"segmentation"}, "editor": set(EDIT_TASKS), "generator": {"layout", "generation"}}


@pytest.mark.parametrize("task", EDIT_TASKS)
def test_edit_truths_read_as_done_and_the_input_as_not_done(task):
    rng = np.random.default_rng(0)
    done, undone, count = [], [], 0
    for seed in range(40):
        case = edit_case(generate_scene(seed), task, rng)
        if case is None:
            continue
        count += 1
        outside = ~case.region
        assert np.array_equal(case.truth[outside], case.source[outside])  # the truth changes only the region
        assert not np.array_equal(case.truth, case.source)
        done.append(read_edit(case, case.truth)["success"])
        undone.append(read_edit(case, case.source)["success"])
    assert count >= 20
    assert np.mean(done) >= 0.9 and not any(undone), (np.mean(done), np.mean(undone))


def test_read_shape_tells_the_three_shapes_apart():
    for shape in ("circle", "square", "triangle"):
        for extent in (0.15, 0.25, 0.35):
            assert read_shape(draw_shape(ShapeSpec(shape, "red", 0.5, 0.5, extent), 64)) == shape


def test_layout_truth_succeeds_and_a_blank_canvas_fails():
    cases = [layout_case(seed) for seed in range(20)]
    assert np.mean([read_edit(c, c.truth)["success"] for c in cases]) >= 0.9
    assert not any(read_edit(c, np.full_like(c.truth, 128))["success"] for c in cases)


def test_edit_replies_parse_to_the_call_the_case_describes():
    scene = generate_scene(11)
    rng = np.random.default_rng(3)
    for task in EDIT_TASKS:
        case = edit_case(scene, task, rng)
        parsed = parse_reply(edit_reply(case, (64, 64)), (64, 64), MODULES)
        assert not parsed.errors and len(parsed.invocations) == 1
        call = parsed.invocations[0]
        assert (call.module, call.task, call.instruction) == ("editor", task, case.instruction)
        assert (call.seg_index is None) == (case.target is None)
        if case.target is None:  # an add says where; an edit of an object finds it by its [SEG] alone
            assert np.allclose(call.box_xyxy, case.box_xyxy, atol=0.7)  # two decimals of a 64-pixel side
        else:
            assert call.box_xyxy is None
    layout = layout_case(5)
    parsed = parse_reply(edit_reply(layout, (64, 64)), (64, 64), MODULES)
    assert not parsed.errors and parsed.invocations[0].task == "layout"


def test_edit_and_layout_samples_for_the_llm():
    rng = np.random.default_rng(1)
    scene = generate_scene(21)
    edit = make_sample(scene, "edit", rng, attempts=4)
    assert edit.reply.startswith("<module>editor</module>") and edit.request.endswith(".")
    assert (edit.kind == "add") == ("<Region>" in edit.reply) and len(edit.seg_targets) == (edit.kind != "add")
    layout = make_sample(scene, "layout", rng)
    assert layout.reply.startswith("<module>generator</module> <instruction>layout: <p>")


def test_recipe_reads_the_diffusion_section_and_the_edit_stage(tmp_path):
    from vitron_lab.training.recipe import load_recipe

    recipe = load_recipe("lab/config/train_shapes.yaml")
    assert recipe.stages[-1].name == "edit" and recipe.stages[-1].start == "profile"
    assert recipe.diffusion.resolution == 64 and recipe.diffusion.unet_channels == (32, 64, 64)
    path = tmp_path / "recipe.yaml"
    stage = "  - {name: align, steps: 5, tasks: {caption: 1}, train: [lm], losses: {text: 1}"
    path.write_text(f"profile: shapes\nstages:\n{stage}}}\ndiffusion: {{steps: 3, unet_width: 9}}\n")
    with pytest.raises(VitronInputError, match="unknown key.*unet_width"):
        load_recipe(path)
    path.write_text(f"profile: shapes\nstages:\n{stage}, start: scratch}}\n")
    with pytest.raises(VitronInputError, match="start: expected one of"):
        load_recipe(path)


@pytest.fixture(scope="module")
def trained_small(tmp_path_factory, tiny_pipeline):
    """The diffusion and signal stages, a few updates each, on a miniature config: the code path, not quality."""
    from vitron_lab.training.diffusion_training import DiffusionTrainConfig, train_diffusion, train_signal

    folder = tmp_path_factory.mktemp("diffusion") / "model"
    config = DiffusionTrainConfig(vae_channels=(8, 16), vae_steps=2, unet_channels=(16, 32), text_width=32,
                                  steps=3, batch=2, warmup_steps=1, log_every=1, signal_steps=2, vocab_size=400)
    report = train_diffusion(folder, config, seed=0, progress=lambda *_: None)
    signal = train_signal(folder, config, tiny_pipeline.llm, "You are VITRON.", progress=lambda *_: None)
    return folder, report, signal


def test_diffusion_and_signal_stages_save_what_the_editor_loads(trained_small, tiny_pipeline):
    from vitron_ros.core.specialists.base import Frame
    from vitron_ros.core.specialists.diffusion import EditorConfig
    from vitron_ros.core.specialists.editor import DiffusionEditor

    folder, report, signal = trained_small
    assert report["unet"]["steps"] == 3 and np.isfinite(report["unet"]["loss_last"])
    assert signal["examples"] >= 1 and (folder / "signal_projector.safetensors").is_file()
    config = EditorConfig(model=str(folder), resolution=64, steps=2, guidance_scale=1.0, dtype="float32")
    # the profile gives the fetch hint and the runtime (backend, precision)
    editor = DiffusionEditor.from_config(config, SimpleNamespace(name="test", runtime=RuntimeConfig(), missing_hint=lambda: ""))
    assert editor.signal_dim == tiny_pipeline.llm.hidden_size
    scene = generate_scene(2_000_000_001)
    case = edit_case(scene, "recolour", np.random.default_rng(0))
    signal_state = np.zeros(tiny_pipeline.llm.hidden_size, np.float32)
    for mode in ("text", "signal", "both"):
        out = editor.with_conditioning(mode).edit(Frame(case.source), SpecialistCall(
            task="recolour", instruction=case.instruction, mask=case.mask, box_xyxy=case.box_xyxy, signal=signal_state))
        assert np.array_equal(out.images[0][~out.masks[0]], case.source[~out.masks[0]])
    with pytest.raises(VitronInputError, match="signal embeddings only"):
        editor.with_conditioning("signal").edit(Frame(case.source), SpecialistCall(
            task="recolour", instruction=case.instruction, mask=case.mask))
    with pytest.raises(VitronInputError, match="conditioning: expected one of"):
        editor.with_conditioning("words")


def test_edit_suite_runs_every_way_and_never_changes_pixels_outside(tiny_pipeline):
    from vitron_lab.evaluation.edit_suite import evaluate_edit, format_edit_report

    report = evaluate_edit(tiny_pipeline, scenes=1, seed_base=2_000_000_001)  # a scene with every edit kind
    rows = [report[task][way] for task in (*EDIT_TASKS, "layout") for way in report[task] if report[task][way]["n"]]
    assert len(rows) == 5 * 2 + 4 * 3 + 2 + 2  # each edit end to end and given; 3 ablations (add: 2); layout x2
    assert all(row["outside_max"] == 0 for row in rows)  # the editor composites: nothing outside its region moves
    # the given invocation makes an image wherever no (random, tiny) segmenter mask is needed first
    assert report["add"]["given"]["produced"] == report["layout"]["given"]["produced"] == 1.0
    assert report["recolour"]["given_signal"]["n"] == report["recolour"]["given"]["n"]
    text = format_edit_report(report)
    assert "| recolour | given |" in text and "[SEG] embedding only" in text and "removal" not in text
