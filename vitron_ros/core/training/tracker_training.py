"""Teach a tiny SAM 2 to track ShapesWorld objects through moving-shapes clips.

The training step runs the same transformers code path that inference runs (an inference session per clip, the
frame-by-frame forward with its memory encoder and memory attention); only the `torch.inference_mode` wrapper of
`Sam2VideoModel.forward` is bypassed so gradients flow through the memory across frames (backprop through time).
Frame 0 is prompted with the ground-truth mask, a box or a point, as SAM 2's own training samples prompts; every
frame's mask (BCE + Dice on SAM 2's low-resolution logits) and object score (visible or not) are supervised.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..shapes.world import generate_clip

_TRAIN_SEED_BASE = 0  # training clips use seeds below 1e9; evaluation draws from 2e9 upwards


@dataclass(frozen=True)
class TrackerTrainConfig:
    steps: int = 1500  # optimiser updates
    clips_per_step: int = 4
    clip_frames: int = 6  # frames per training clip (the first is prompted); gradients flow through all of them
    max_objects: int = 3
    speed: float = 0.06  # per-frame displacement as a fraction of the image; faster than evaluation clips
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    log_every: int = 50
    prompt_mix: tuple[float, float, float] = (0.5, 0.3, 0.2)  # frame-0 prompt: mask, box, point
    # Share of clips of look-alike shapes, where only memory tells the target apart. Meant to stop the tiny model
    # from segmenting every shape in sight whatever it was prompted with; at 0.5 for 1,800 updates it did not
    # (measured), so it is off by default.
    twin_share: float = 0.0


def _dice_loss(logits, target):
    probs = logits.sigmoid().flatten(1)
    target = target.flatten(1)
    numerator = 2 * (probs * target).sum(-1) + 1
    return 1 - numerator / (probs.sum(-1) + target.sum(-1) + 1)


class TrackerTrainer:
    def __init__(self, model, processor, config: TrackerTrainConfig, seed: int = 0):
        import torch

        self.model, self.processor, self.config, self.seed = model, processor, config, seed
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.forward = type(model).forward.__wrapped__  # Sam2VideoModel.forward without its inference_mode wrapper

    def _clip_loss(self, rng: np.random.Generator, step: int, index: int):
        import torch
        import torch.nn.functional as F
        from transformers.models.sam2_video.modeling_sam2_video import (
            Sam2VideoInferenceSession,
        )

        cfg = self.config
        clip = generate_clip(_TRAIN_SEED_BASE + step * 1000 + index + self.seed * 10**7, frames=cfg.clip_frames,
                             max_objects=cfg.max_objects, speed=cfg.speed, twins=bool(rng.random() < cfg.twin_share))
        visible = [k for k, m in enumerate(clip.masks[0]) if m.sum() >= 4]
        if not visible:
            return None
        target_index = int(rng.choice(visible))
        height, width = clip.frames[0].shape[:2]
        session = Sam2VideoInferenceSession(video_height=height, video_width=width, dtype=torch.float32)
        first = clip.masks[0][target_index]
        kind = rng.choice(3, p=cfg.prompt_mix)
        add = self.processor.add_inputs_to_inference_session
        if kind == 0:
            add(session, frame_idx=0, obj_ids=[1], input_masks=[first])
        elif kind == 1:
            rows, cols = np.nonzero(first)
            box = [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]
            add(session, frame_idx=0, obj_ids=[1], input_boxes=[[box]], original_size=(height, width))
        else:
            rows, cols = np.nonzero(first)
            pick = int(rng.integers(len(rows)))
            point = [float(cols[pick]) + 0.5, float(rows[pick]) + 0.5]
            add(session, frame_idx=0, obj_ids=[1], input_points=[[[point]]], input_labels=[[[1]]],
                original_size=(height, width))
        losses = []
        for t, image in enumerate(clip.frames):
            pixels = self.processor(images=image, return_tensors="pt").pixel_values[0]
            out = self.forward(self.model, inference_session=session, frame=pixels, frame_idx=t)
            logits = out.pred_masks.reshape(1, 1, *out.pred_masks.shape[-2:]).float()
            truth = torch.as_tensor(clip.masks[t][target_index], dtype=torch.float32)[None, None]
            truth = F.interpolate(truth, size=logits.shape[-2:], mode="area")  # SAM 2 stretches frames to a square
            present = torch.tensor([float(clip.masks[t][target_index].sum() > 0)])
            frame_loss = F.binary_cross_entropy_with_logits(
                out.object_score_logits.reshape(1).float(), present
            )
            if t > 0 or kind != 0:  # a mask prompt is copied to the output as is: nothing to learn on frame 0
                frame_loss = frame_loss + F.binary_cross_entropy_with_logits(logits, truth) + _dice_loss(logits, truth).mean()
            losses.append(frame_loss)
        return torch.stack(losses).mean()

    def train(self) -> dict:
        import torch
        from tqdm import tqdm

        cfg = self.config
        self.model.eval()  # eval keeps the inference path's branches (object scores); nothing here uses dropout
        rng = np.random.default_rng(self.seed)
        history, started = [], time.perf_counter()
        with tqdm(total=cfg.steps, desc="tracker", unit="update") as bar:
            for step in range(cfg.steps):
                lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) * 0.5 * (1 + np.cos(np.pi * step / cfg.steps))
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                losses = [loss for i in range(cfg.clips_per_step) if (loss := self._clip_loss(rng, step, i)) is not None]
                loss = torch.stack(losses).mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                self.optimizer.step()
                history.append(loss.item())
                bar.update(1)
                if (step + 1) % cfg.log_every == 0:
                    bar.set_postfix(loss=f"{np.mean(history[-cfg.log_every:]):.3f}")
        return {"steps": cfg.steps, "seconds": time.perf_counter() - started,
                "loss_first": float(np.mean(history[: cfg.log_every])),
                "loss_last": float(np.mean(history[-cfg.log_every:]))}


def train_tracker(folder: str | os.PathLike, config: TrackerTrainConfig, image_size: int = 128, seed: int = 0,
                  progress=print) -> dict:
    """Build a tiny SAM 2, train it on ShapesWorld clips and save it (save_pretrained) to `folder`."""
    import torch

    from ..model.sam2_loader import build_tiny_sam2, load_sam2_video
    from ..model.weights import readable_by_all

    folder = Path(folder)
    build_tiny_sam2(folder, image_size=image_size, seed=seed, progress=progress)
    model, processor = load_sam2_video(str(folder))
    torch.manual_seed(seed)
    report = TrackerTrainer(model, processor, config, seed).train()
    model.save_pretrained(folder)
    readable_by_all(folder)
    progress(f"tracker trained: {report['steps']} updates in {report['seconds'] / 60:.1f} min, "
             f"loss {report['loss_first']:.3f} -> {report['loss_last']:.3f}; saved {folder}")
    return report
