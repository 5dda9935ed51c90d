"""`vitron-lab`: train the tiny VITRON on ShapesWorld, score profiles on the held-out suites, build the tiny test
profile. The lab is a separate distribution (lab/) that a robot does not install; it drives the runtime (vitron_ros)
through its public API and writes checkpoints the runtime loads like any published one.

Every failure the user can cause ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vitron_ros.cli import OneLineParser, run_command
from vitron_ros.core.errors import VitronInputError


def _progress(message: str) -> None:
    print(message, file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vitron-lab", description="ShapesWorld training, evaluation and tiny builds for VITRON")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    train = commands.add_parser("train", help="train the tiny VITRON stage by stage (resumable)")
    train.add_argument("--stage", required=True,
                       help="a stage name (align, invocation, decoder, grounding, synergy, video, edit), 'tracker' "
                            "(SAM 2), 'diffusion' (the generator/editor), 'signal' (its signal projector), "
                            "'video_generator' (AnimateDiff from the editor) or 'all'")
    train.add_argument("--config", required=True, help="training recipe YAML, e.g. lab/config/train_shapes.yaml")
    train.add_argument("--work-dir", default=".train/shapes", help="checkpoints, logs and resumable state")
    train.add_argument("--fresh", action="store_true", help="ignore finished stages and saved state; start over")
    train.add_argument("--no-export", action="store_true", help="leave the profile's checkpoint files untouched")
    train.add_argument("--profiles-file", default=None)

    evaluate = commands.add_parser("eval", help="score a profile on a held-out benchmark suite")
    evaluate.add_argument("--suite", required=True, choices=("shapes", "video", "edit", "3d", "video-edit", "video-gen"),
                          help="shapes: still-image tasks; video: DAVIS J&F on moving-shapes clips; edit: image "
                               "edits and layouts against re-rendered truths; 3d: masks lifted with depth against "
                               "exact RGB-D geometry (no model; default 100 scenes); video-edit: objects removed and "
                               "recoloured through clips against re-rendered truths; video-gen: text- and "
                               "image-to-video clips read back for the requested objects and motion (default 20)")
    evaluate.add_argument("--profile", default="shapes")
    evaluate.add_argument("--profiles-file", default=None)
    evaluate.add_argument("--scenes", type=int, default=None,
                          help="held-out scenes (shapes suite: per task, default 200; edit suite: default 50)")
    evaluate.add_argument("--no-ablation", action="store_true", help="edit suite: skip the text/signal ablation")
    evaluate.add_argument("--clips", type=int, default=None, help="held-out clips (video: 40, video-edit: 10, "
                                                                         "video-gen: 20)")
    evaluate.add_argument("--frames", type=int, default=None, help="frames per clip (video: 24, video-edit: 8)")
    evaluate.add_argument("--json", default=None, help="also write the full report to this file")
    evaluate.add_argument("--baseline", default=None, metavar="REPORT.json",
                          help="shapes suite: a previous checkpoint's --json report, printed next to this one's")
    evaluate.add_argument("--device", default="cpu", help="auto, cpu or cuda[:N]")

    tiny = commands.add_parser("build-tiny", help="build a profile's random-weight tiny checkpoints where missing "
                                                   "(the tiny test profile)")
    tiny.add_argument("--profile", default="tiny")
    tiny.add_argument("--profiles-file", default=None)
    return parser


def _build_tiny(args) -> int:
    from vitron_ros.core.config import load_profile

    from .tiny import build_tiny_assets
    from .tiny_glamm import build_tiny_glamm

    profile = load_profile(args.profile, args.profiles_file)
    if profile.llm.family == "glamm":  # GLaMM's own tiny model, converted as a published checkpoint is
        build_tiny_glamm(profile, progress=_progress)
    else:
        build_tiny_assets(profile, progress=_progress)
    return 0


def _train(args) -> int:
    from vitron_ros.core.config import load_profile

    from .training.recipe import STAGE_NAMES, load_recipe
    from .training.trainer import Trainer

    recipe = load_recipe(args.config)
    names = [s.name for s in recipe.stages]
    tracker_named = recipe.tracker is not None
    own = ((("tracker",) if tracker_named else ()) + (("diffusion", "signal") if recipe.diffusion else ())
           + (("video_generator",) if recipe.video_generator else ()))
    if args.stage not in ("all", *names, *own):
        raise VitronInputError(
            f"--stage {args.stage!r}: expected 'all', one of {names} or of {list(own)} (the recipe's own sections; "
            f"VITRON's order: {STAGE_NAMES})"
        )
    profile = load_profile(recipe.profile, args.profiles_file)
    if args.fresh and Path(args.work_dir).exists():
        import shutil

        shutil.rmtree(args.work_dir)
    llm = profile.llm  # the LLM whose [SEG] states the signal stage learns from
    if args.stage not in own:
        trainer = Trainer(recipe, args.work_dir, profile=profile)
        trainer.run(names if args.stage == "all" else [args.stage], resume=True)
        if not args.no_export:
            trainer.export()
        elif args.stage == "all" and recipe.diffusion:  # the work dir's LLM, exported beside it, not the shipped one
            from .training.trainer import relocated

            llm = trainer.export(relocated(profile, Path(args.work_dir) / "export")).llm
    if args.stage in ("tracker", "all") and tracker_named:
        _train_tracker(recipe, profile, Path(args.work_dir), export=not args.no_export)
    if args.stage in ("diffusion", "all") and recipe.diffusion:
        _train_diffusion(recipe, profile, Path(args.work_dir), export=not args.no_export)
    if args.stage in ("signal", "all") and recipe.diffusion:
        _train_signal(recipe, profile, llm, Path(args.work_dir), export=not args.no_export)
    if args.stage == "video_generator" or (args.stage == "all" and recipe.video_generator):
        if args.stage == "all" and profile.section("video_generator") is None:
            _progress(f"video generator stage skipped: profile {profile.name!r} has no video_generator section "
                      "(run --stage video_generator to train one into the work dir)")
        else:
            _train_video_generator(recipe, profile, Path(args.work_dir), export=not args.no_export)
    return 0


def _train_video_generator(recipe, profile, work_dir: Path, export: bool) -> None:
    """AnimateDiff parts from the editor this work dir trained (else the profile's), exported to the profile's
    video_generator paths."""
    import json

    from .training.video_generator_training import PARTS, train_video_generator

    section = profile.section("video_generator")
    if section is not None and export:  # what the exported checkpoint will be loaded with must fit it
        if section.image_controlnet is None or section.scheduler != "checkpoint":
            raise VitronInputError(f"profile {profile.name!r}: the trained video generator needs an image_controlnet "
                                   "path and `scheduler: checkpoint` (it predicts clean latents with its own scheduler)")
        if section.frames != recipe.video_generator.frames:
            raise VitronInputError(f"profile {profile.name!r} generates {section.frames} frames but the recipe trains "
                                   f"on {recipe.video_generator.frames}: make them equal")
    editor = work_dir / "diffusion"
    if not (editor / "model_index.json").is_file():
        editor = _diffusion_destination(profile)
    _progress(f"video generator stage: from the editor in {editor}")
    folder = work_dir / "video_generator"
    report = train_video_generator(folder, editor, recipe.video_generator, seed=recipe.seed, progress=_progress)
    (work_dir / "video_generator_report.json").write_text(json.dumps(report, indent=1))
    if export and section is not None:
        for part, destination in zip(PARTS, (section.model, section.motion_adapter, section.image_controlnet)):
            _export_folder(folder / part, Path(destination))
    else:
        _progress(f"the video generator is in {folder} ({', '.join(PARTS)}): point a profile's video_generator "
                  "section at them (model, motion_adapter, image_controlnet; scheduler: checkpoint) to use it")


def _diffusion_destination(profile) -> Path:
    section = profile.section("editor") or profile.section("generator")
    if section is None:
        raise VitronInputError(f"profile {profile.name!r} has no editor or generator section to train a model for")
    return Path(section.model)


def _export_folder(folder: Path, destination: Path) -> None:
    import shutil

    from vitron_ros.core.model.weights import replacing_folder

    with replacing_folder(destination) as staging:
        shutil.copytree(folder, staging, dirs_exist_ok=True)
    _progress(f"exported {folder.name} -> {destination}")


def _train_diffusion(recipe, profile, work_dir: Path, export: bool) -> None:
    import json

    from .training.diffusion_training import train_diffusion

    destination = _diffusion_destination(profile)
    folder = work_dir / "diffusion"
    report = train_diffusion(folder, recipe.diffusion, seed=recipe.seed, progress=_progress)
    (work_dir / "diffusion_report.json").write_text(json.dumps(report, indent=1))
    if export:
        _export_folder(folder, destination)
        _progress("the exported model has no signal projector yet: run --stage signal (or set signal_projector: null)")


def _train_signal(recipe, profile, llm_config, work_dir: Path, export: bool) -> None:
    import json

    from vitron_ros.core.specialists import system_prompt
    from vitron_ros.core.model.vitron_llm import VitronLLM

    from .training.diffusion_training import train_signal

    destination = _diffusion_destination(profile)
    folder = work_dir / "diffusion"
    if not (folder / "model_index.json").is_file():  # no diffusion stage in this work dir: the shipped model's
        if not (destination / "model_index.json").is_file():
            raise VitronInputError(f"no diffusion model in {folder} or {destination}; run --stage diffusion first")
        _export_folder(destination, folder)
    _progress(f"signal stage: [SEG] states of the LLM in {llm_config.model}")
    llm = VitronLLM.from_pretrained(llm_config)
    report = train_signal(folder, recipe.diffusion, llm, llm.config.system_prompt or system_prompt(),
                          seed=recipe.seed, progress=_progress)
    (work_dir / "signal_report.json").write_text(json.dumps(report, indent=1))
    if export:
        _export_folder(folder, destination)


def _train_tracker(recipe, profile, work_dir: Path, export: bool) -> None:
    import shutil

    from .training.tracker_training import train_tracker

    if profile.section("tracker") is None:
        raise VitronInputError(f"profile {profile.name!r} has no tracker section to train a SAM 2 for")
    folder = work_dir / "tracker"
    train_tracker(folder, recipe.tracker, image_size=recipe.architecture.sam2_image_size, seed=recipe.seed, progress=_progress)
    if export:
        destination = Path(profile.section("tracker").model)
        if destination.exists():
            shutil.rmtree(destination)
        shutil.copytree(folder, destination)
        _progress(f"exported tracker -> {destination}")


def _eval(args) -> int:
    from vitron_ros.core.config import load_profile
    from vitron_ros.core.pipeline import VitronPipeline

    from .evaluation.shapes_suite import evaluate_shapes, format_report

    if args.suite == "3d":  # the lifting from masks and depth: exact geometry, no model
        from .evaluation.lifting_suite import evaluate_3d, format_3d_report

        report = evaluate_3d(scenes=args.scenes or 100, progress=True)
        print(format_3d_report(report))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
        return 0
    baseline = None
    if args.baseline:
        try:
            baseline = json.loads(Path(args.baseline).read_text())
        except (OSError, ValueError) as exc:
            raise VitronInputError(f"--baseline {args.baseline}: not a readable JSON report ({exc})") from None
    defaults = {"video": (40, 24), "video-edit": (10, 8), "video-gen": (20, 0)}.get(args.suite, (40, 24))
    args.clips, args.frames = args.clips or defaults[0], args.frames or defaults[1]
    profile = load_profile(args.profile, args.profiles_file)
    if args.suite == "video-edit" and (profile.section("tracker") is None or profile.section("editor") is None):
        raise VitronInputError(f"profile {profile.name!r} needs a tracker and an editor for the video-edit suite")
    if args.suite == "video-edit" and (args.clips < 1 or args.frames < 2):
        raise VitronInputError("the video-edit suite needs --clips >= 1 and --frames >= 2")
    if args.suite == "video-gen" and profile.section("video_generator") is None:
        raise VitronInputError(f"profile {profile.name!r} has no video_generator; the video-gen suite needs one")
    if args.suite == "video-gen" and (args.frames or args.clips < 1):
        raise VitronInputError("the video-gen suite needs --clips >= 1; its frames are the profile's (no --frames)")
    if args.suite == "video" and profile.section("tracker") is None:
        raise VitronInputError(f"profile {profile.name!r} has no tracker; the video suite needs one")
    if args.suite == "video" and (args.clips < 1 or args.frames < 3):
        raise VitronInputError("the video suite needs --clips >= 1 and --frames >= 3 (DAVIS leaves out two frames)")
    pipeline = VitronPipeline.from_profile(profile, device=args.device, progress=_progress)
    if args.suite == "video-edit":
        from .evaluation.video_edit_suite import evaluate_video_edit, format_video_edit_report

        report = evaluate_video_edit(pipeline, clips=args.clips, frames=args.frames, progress=True)
        print(format_video_edit_report(report))
    elif args.suite == "video-gen":
        from .evaluation.video_generation_suite import evaluate_video_generation, format_video_generation_report

        report = evaluate_video_generation(pipeline, clips=args.clips, progress=True)
        print(format_video_generation_report(report))
    elif args.suite == "video":
        from .evaluation.video_suite import evaluate_video, format_video_report

        report = evaluate_video(pipeline, clips=args.clips, frames=args.frames, progress=True)
        print(format_video_report(report))
    elif args.suite == "edit":
        from .evaluation.edit_suite import evaluate_edit, format_edit_report

        if not {"editor", "generator"} <= pipeline.specialists.keys():
            raise VitronInputError(f"profile {profile.name!r} needs an editor and a generator for the edit suite")
        report = evaluate_edit(pipeline, scenes=args.scenes or 50, ablation=not args.no_ablation, progress=True)
        print(format_edit_report(report))
    else:
        report = evaluate_shapes(pipeline, scenes=args.scenes or 200, progress=True)
        print(format_report(report, baseline))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), {"train": _train, "eval": _eval, "build-tiny": _build_tiny}, argv)


if __name__ == "__main__":
    sys.exit(main())
