"""The full `shapes` training run, its held-out evaluation, and the synergy ablation, with the figures printed.

    .venv/bin/python bench/train_shapes.py                      # train all six stages from scratch (50 min measured, 2 cores)
    .venv/bin/python bench/train_shapes.py --skip-train         # evaluate an existing run's work dir
    .venv/bin/python bench/train_shapes.py --export             # also write the result over models/shapes

The ablation trains stage 5 a second time from the same stage-4 weights, for the same number of updates on the
same data, with the synergy losses and the gradient reversal switched off, and evaluates both stage-5 results on the
same scenes; the final (stage 6) model is evaluated too. The SAM 2 tracker trains separately (`--stage tracker`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _stage_seconds(work_dir: Path) -> dict[str, float]:
    seconds = {}
    for log in sorted(work_dir.glob("*/log.jsonl")):
        lines = log.read_text().splitlines()
        if lines:
            seconds[log.parent.name] = json.loads(lines[-1])["seconds"]
    return seconds


def main() -> int:
    import torch

    from vitron_lab.evaluation.shapes_suite import evaluate_shapes, format_report
    from vitron_lab.training.recipe import load_recipe
    from vitron_lab.training.trainer import Trainer, relocated
    from vitron_ros.core.config import load_profile
    from vitron_ros.core.pipeline import VitronPipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "lab" / "config" / "train_shapes.yaml"))
    parser.add_argument("--work-dir", default=str(REPO / ".train" / "shapes"))
    parser.add_argument("--skip-train", action="store_true", help="use the finished stages already in --work-dir")
    parser.add_argument("--no-ablation", action="store_true")
    parser.add_argument("--scenes", type=int, default=200, help="held-out scenes per task for the evaluation")
    parser.add_argument("--export", action="store_true", help="write the trained model over the shipped profile")
    parser.add_argument("--report", default=None, help="write both evaluation reports to this JSON file")
    args = parser.parse_args()

    torch.set_num_threads(2)
    recipe = load_recipe(args.config)
    profile = load_profile(recipe.profile)
    work_dir = Path(args.work_dir)
    scratch = Path(tempfile.mkdtemp(prefix="vitron-bench-"))
    trainer = Trainer(recipe, work_dir, profile=relocated(profile, scratch / "synergy"))
    if not args.skip_train:
        began = time.perf_counter()
        trainer.run([s.name for s in recipe.stages])
        print(f"training wall time: {(time.perf_counter() - began) / 60:.1f} min")
    seconds = _stage_seconds(work_dir)
    steps = {s.name: s.steps for s in recipe.stages}
    for name, value in seconds.items():
        print(f"  stage {name:<11} {steps.get(name, 0):>5} updates  {value / 60:6.1f} min  {steps.get(name, 1) / value:5.2f} updates/s")
    print(f"  total                          {sum(seconds.values()) / 60:6.1f} min")
    if args.export:
        trainer.export(profile)

    reports = {}
    trainer.export()
    final = VitronPipeline.from_profile(trainer.profile, progress=lambda *_: None)
    reports["final"] = evaluate_shapes(final, scenes=args.scenes, progress=True)
    print("the final model (every stage)")
    print(format_report(reports["final"]))
    trainer.export(stage="synergy")
    with_synergy = VitronPipeline.from_profile(trainer.profile, progress=lambda *_: None)
    reports["synergy"] = evaluate_shapes(with_synergy, scenes=args.scenes, progress=True)
    print("stage 5 with the synergy module")
    print(format_report(reports["synergy"]))

    if not args.no_ablation:
        # Stage 5 again from stage 4's weights, synergy off: same updates, same data, no discriminator.
        stage = recipe.stage("synergy")
        plain = dataclasses.replace(
            stage, synergy_strength=0.0, losses={k: v for k, v in stage.losses.items() if not k.startswith("synergy")}
        )
        ablation_dir = scratch / "work-ablation"
        ablation_dir.mkdir(parents=True)
        shutil.copytree(work_dir / "init", ablation_dir / "init")
        names = [s.name for s in recipe.stages]
        previous = names[names.index("synergy") - 1]
        shutil.copytree(work_dir / previous, ablation_dir / previous)
        ablation_recipe = dataclasses.replace(recipe, stages=tuple(plain if s.name == "synergy" else s for s in recipe.stages))
        ablation = Trainer(ablation_recipe, ablation_dir, profile=relocated(profile, scratch / "no-synergy"))
        ablation.run(["synergy"])
        ablation.export()
        without = VitronPipeline.from_profile(ablation.profile, progress=lambda *_: None)
        reports["no_synergy"] = evaluate_shapes(without, scenes=args.scenes, progress=True)
        print("ablation: stage 5 without the synergy module")
        print(format_report(reports["no_synergy"]))
        a, b = reports["synergy"], reports["no_synergy"]
        print("synergy ablation (with / without):")
        print(f"  referring cIoU      {a['referring']['all']['ciou']:.3f} / {b['referring']['all']['ciou']:.3f}")
        print(f"  VQA accuracy        {a['vqa']['overall']['accuracy']:.3f} / {b['vqa']['overall']['accuracy']:.3f}")
        print(f"  region accuracy     {a['region']['overall']['accuracy']:.3f} / {b['region']['overall']['accuracy']:.3f}")
        print(f"  grounded match      {a['grounded']['phrase_mask_match']:.3f} / {b['grounded']['phrase_mask_match']:.3f}")
        print(f"  invocation validity {a['invocation_validity']['rate']:.3f} / {b['invocation_validity']['rate']:.3f}")
    if args.report:
        Path(args.report).write_text(json.dumps({"stage_seconds": seconds, **reports}, indent=2))
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
