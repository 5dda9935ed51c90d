"""Training: every stage's loss falls on a short run, gradient reversal reverses, resume is exact, recipes are checked."""

import dataclasses

import pytest
import torch

from vitron_lab.training.recipe import STAGE_NAMES, load_recipe
from vitron_lab.training.synergy import reverse_gradient
from vitron_ros.core.errors import VitronInputError


def _stage_loss(trainer, stage, batch_parts):
    scenes, batch, prompts, clips = batch_parts
    losses = trainer.model(batch, scenes, prompts, stage.synergy_strength, clips=clips)
    return sum(w * losses[n] for n, w in stage.losses.items() if n in losses), losses


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_each_stage_loss_falls_on_a_short_run(shapes_recipe, shapes_trainer, name):
    """A few updates on one batch of the stage's own data lower the stage's own objective."""
    trainer = shapes_trainer
    stage = dataclasses.replace(shapes_recipe.stage(name), lr=3e-3)
    if name == "video":  # its image batches are the synergy stage's; here its batches of clips
        stage = dataclasses.replace(stage, clip_share=1.0, losses={"text": 1.0})
    elif stage.clip_share:  # the edit stage's own data is its images (edits and layouts)
        stage = dataclasses.replace(stage, clip_share=0.0, clip_tasks=None)
    snapshot = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    try:
        trainer.model.train()
        optimiser = trainer._optimiser(stage)
        parts = trainer.make_batch(stage, 0)
        with torch.no_grad():
            before, losses = _stage_loss(trainer, stage, parts)
        assert set(stage.losses) - {"synergy_adv", "synergy_spec"} <= set(losses)  # every loss the stage names is computed
        for _ in range(6):
            loss, _ = _stage_loss(trainer, stage, parts)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            after, _ = _stage_loss(trainer, stage, parts)
        assert float(after) < 0.9 * float(before), (name, float(before), float(after))
    finally:
        trainer.model.load_state_dict(snapshot)
        for p in trainer.model.parameters():
            p.requires_grad_(True)


def test_stages_train_only_their_groups(shapes_recipe, shapes_trainer):
    stage = shapes_recipe.stage("align")
    trainer = shapes_trainer
    try:
        trainer._optimiser(stage)
        groups = trainer.model.groups()
        assert all(p.requires_grad for p in groups["lm"])
        assert not any(p.requires_grad for p in groups["sam_decoder"] + groups["signal_projector"])
    finally:
        for p in trainer.model.parameters():
            p.requires_grad_(True)


def test_gradient_reversal_flips_the_sign():
    x = torch.randn(5, 3, requires_grad=True)
    weights = torch.randn(3)
    (x @ weights).sum().backward()
    plain = x.grad.clone()
    x.grad = None
    (reverse_gradient(x, 0.5) @ weights).sum().backward()
    torch.testing.assert_close(x.grad, -0.5 * plain)
    torch.testing.assert_close(reverse_gradient(x, 2.0), x)  # the forward pass is the identity


def test_synergy_discriminator_is_fought_by_the_projector(shapes_recipe, shapes_trainer):
    """The adversarial loss trains the discriminator to find the task and the projector to hide it: flipping the
    reversal leaves the discriminator's gradient alone and flips the invariant projector's."""
    assert shapes_recipe.stage("synergy").synergy_strength > 0
    model = shapes_trainer.model
    projector = model.heads.signal_projector
    hidden = torch.randn(12, model.llava.config.text_config.hidden_size, generator=torch.Generator().manual_seed(0))
    tasks = torch.arange(12) % 3

    def grads(strength):
        model.zero_grad()
        invariant, specific = projector.parts(hidden)
        model.synergy(invariant, specific, tasks, strength)["synergy_adv"].backward()
        return ([p.grad.clone() for p in model.synergy.discriminator.parameters()],
                [p.grad.clone() for p in projector.invariant.parameters()])

    disc_on, proj_on = grads(1.0)
    disc_off, proj_off = grads(-1.0)
    assert any(g.abs().sum() > 0 for g in proj_on)
    for a, b in zip(disc_on, disc_off, strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(proj_on, proj_off, strict=True):
        torch.testing.assert_close(a, -b)
    model.zero_grad()


def test_resume_reproduces_an_uninterrupted_run(tmp_path, shapes_recipe, shapes_trainer):
    """Interrupt a stage after a checkpoint, resume it, and land on the very weights of a run never stopped."""
    from vitron_lab.training.trainer import Trainer

    stage = dataclasses.replace(shapes_recipe.stage("align"), steps=5)
    recipe = dataclasses.replace(shapes_recipe, stages=(stage,), checkpoint_every=2, batch_scenes=2, turns_per_scene=2)
    init = shapes_trainer.work_dir / "init"

    def trainer_at(folder):
        (folder / "init").parent.mkdir(parents=True, exist_ok=True)
        import shutil

        shutil.copytree(init, folder / "init")
        return Trainer(recipe, folder, profile=shapes_trainer.profile, progress=False)

    straight = trainer_at(tmp_path / "straight")
    straight.run(["align"])
    interrupted = trainer_at(tmp_path / "interrupted")
    original = interrupted.make_batch

    def crash_at_step_3(stage, step):
        if step == 3:
            raise KeyboardInterrupt
        return original(stage, step)

    interrupted.make_batch = crash_at_step_3
    with pytest.raises(KeyboardInterrupt):
        interrupted.run(["align"])
    assert (tmp_path / "interrupted" / "align" / "latest.json").is_file()
    resumed = Trainer(recipe, tmp_path / "interrupted", profile=shapes_trainer.profile, progress=False)
    resumed.run(["align"])
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=lambda m: f"{key}: {m}")
    assert not (tmp_path / "interrupted" / "align" / "latest.json").exists()
    assert (tmp_path / "interrupted" / "align" / "final.safetensors").is_file()


def test_a_later_stage_needs_the_previous_one(tmp_path, shapes_recipe, shapes_trainer):
    import shutil

    from vitron_lab.training.trainer import Trainer

    shutil.copytree(shapes_trainer.work_dir / "init", tmp_path / "init")
    trainer = Trainer(shapes_recipe, tmp_path, profile=shapes_trainer.profile, progress=False)
    with pytest.raises(VitronInputError, match="run `vitron-lab train --stage align` first"):
        trainer.run(["invocation"])


def test_recipe_errors_name_the_bad_key(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("profile: shapes\nstages:\n  - {name: align, steps: 5, tasks: {captions: 1}, train: [lm], losses: {text: 1}}\n")
    with pytest.raises(VitronInputError, match="unknown task 'captions'"):
        load_recipe(path)
    path.write_text("profile: shapes\nstages:\n  - {name: align, steps: 5, tasks: {caption: 1}, train: [llm], losses: {text: 1}}\n")
    with pytest.raises(VitronInputError, match="unknown group 'llm'"):
        load_recipe(path)
    path.write_text("profile: shapes\nstages:\n  - {name: decoder, steps: 5, tasks: {caption: 1}, train: [lm], losses: {text: 1}}\n"
                    "  - {name: align, steps: 5, tasks: {caption: 1}, train: [lm], losses: {text: 1}}\n")
    with pytest.raises(VitronInputError, match="VITRON's order"):
        load_recipe(path)
    path.write_text("profile: shapes\nbatch: 3\nstages:\n  - {name: align, steps: 5, tasks: {caption: 1}, train: [lm], losses: {text: 1}}\n")
    with pytest.raises(VitronInputError, match="unknown key"):
        load_recipe(path)
    path.write_text("profile: shapes\nvideo_pooling: frame_soup\n"
                    "stages:\n  - {name: align, steps: 5, tasks: {caption: 1}, train: [lm], losses: {text: 1}}\n")
    with pytest.raises(VitronInputError, match="video_pooling 'frame_soup' is not one of"):
        load_recipe(path)
