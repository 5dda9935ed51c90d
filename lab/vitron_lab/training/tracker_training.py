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
_IMAGE_SEED_BASE = 500_000_000  # the still-image phase's clips (one frame each)


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
    # Share of clips of look-alike shapes, where only memory tells the target apart. On its own (0.5, 1,800
    # updates at lr 1e-3) it did not stop the tiny model from segmenting every shape in view; with the memory
    # priors below and lr 3e-4 it does (lab/config/train_shapes.yaml).
    twin_share: float = 0.0
    min_objects: int = 1  # fewest shapes per training clip; with one, segmenting whatever is in view is right
    # SAM 2 stores each frame's memory in bfloat16 (8-bit mantissa): the prompted object's mask only survives in it
    # while the pixel features it is added to stay small. Unchecked, the tiny model's top-level features grew from
    # RMS 0.05 to about 30 and the memories of two different objects differed by 0.02 % (measured on the
    # 2,400-update tracker): it then tracked every shape in view. Mean square above `feature_rms**2` is penalised.
    feature_rms: float = 1.0
    feature_penalty: float = 0.0
    # Before training, the memory encoder's mask branch is scaled up by this and its pixel branch down by it, so
    # the memories start out carrying mostly where the prompted object was.
    mask_memory_gain: float = 1.0
    # Locality prior for the memory attention, set before training: each cross-attention's query and key biases get
    # this amplitude on the rotary pairs of its `locality_pairs` fastest frequencies (both axes), so a position
    # starts out attending to the memories at and next to itself. Without it the attention starts uniform, memories
    # average out, and the tiny model learned to ignore them.
    memory_locality: float = 0.0
    locality_pairs: int = 4
    # Weight of a loss on the other objects' pixels (the mean probability the track gives them). BCE + Dice alone
    # barely charge for covering a small other object next to the prompted one. Measured (bench/tracker_drift.py,
    # README "Video results"): 150 more updates at 2.0 on the shipped tracker cut the other objects covered from
    # 0.33 to 0.11, but J fell from 0.42 to 0.27: the track shrinks and is lost instead. Off in the shipped recipe.
    distractor_weight: float = 0.0
    # SAM 2's own recipe trains on still images (SA-1B) before videos. Here: `image_steps` updates of `image_batch`
    # single frames, each prompted with a box or a point on one of its shapes, before the clip updates, so the
    # encoder and mask decoder know whole objects before the memory has to pick one. Measured at 256 px: J 0.36 ->
    # 0.50 after 300 clip updates, but the decoder still ignored its box prompts (after 200 still-image updates the
    # trained model's loss on box-prompted still frames was about 0.9). Off in the shipped recipe.
    image_steps: int = 0
    image_batch: int = 16
    image_lr: float = 1e-3
    # Prior for the mask decoder, set before training, so that its prompts matter from the first update. With
    # transformers' N(0, 0.02) init the decoder starts in a flat spot: its first two-way layer's self-attention
    # replaces the tokens (no residual) and is near uniform, so every token leaves it as about the same vector
    # (cosine 0.999), and a prompt's position then enters only queries and keys; the gradient reaching the prompt
    # tokens was about 240 times smaller than the mask token's, and trained trackers ignored their boxes and points.
    # On: the prompt, mask, IoU and object-score embeddings drawn at N(0, 1); that self-attention the identity; each
    # token/image cross-attention's query and key projections equal (`decoder_match_gain` x random orthonormal
    # rows), so a token starts out attending to the image positions that match its own encoding. Measured on still
    # frames (200 updates): logits moved by 5-13 instead of 0.0001 between boxes at opposite corners; any one or
    # two of the three changes alone did not move them.
    decoder_prompt_prior: bool = False
    decoder_match_gain: float = 2.0


def _dice_loss(logits, target):
    probs = logits.sigmoid().flatten(1)
    target = target.flatten(1)
    numerator = 2 * (probs * target).sum(-1) + 1
    return 1 - numerator / (probs.sum(-1) + target.sum(-1) + 1)


def _covered_loss(logits, truth, others):
    """Mean probability the track's (1, 1, h, w) logits give the other objects' pixels (full-size bool masks
    `others`), their overlap with the prompted object's `truth` (same shape as the logits) left out; 0 when none."""
    import torch
    import torch.nn.functional as F

    others = [m for m in others if m.any()]
    if not others:
        return logits.new_zeros(())
    other = torch.as_tensor(np.logical_or.reduce(others), dtype=torch.float32)[None, None]
    other = F.interpolate(other, size=logits.shape[-2:], mode="area") * (1 - truth)
    if other.sum() == 0:
        return logits.new_zeros(())
    return (logits.sigmoid() * other).sum() / other.sum()


class TrackerTrainer:
    def __init__(self, model, processor, config: TrackerTrainConfig, seed: int = 0):
        import torch

        self.model, self.processor, self.config, self.seed = model, processor, config, seed
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.forward = type(model).forward.__wrapped__  # Sam2VideoModel.forward without its inference_mode wrapper

    def _clip_loss(self, rng: np.random.Generator, seed: int, frames: int | None = None,
                   prompt_mix: tuple[float, float, float] | None = None):
        import torch
        import torch.nn.functional as F
        from transformers.models.sam2_video.modeling_sam2_video import (
            Sam2VideoInferenceSession,
        )

        cfg = self.config
        clip = generate_clip(seed, frames=frames or cfg.clip_frames,
                             max_objects=cfg.max_objects, speed=cfg.speed, twins=bool(rng.random() < cfg.twin_share),
                             min_objects=cfg.min_objects)
        visible = [k for k, m in enumerate(clip.masks[0]) if m.sum() >= 4]
        if not visible:
            return None
        target_index = int(rng.choice(visible))
        height, width = clip.frames[0].shape[:2]
        session = Sam2VideoInferenceSession(video_height=height, video_width=width, dtype=torch.float32)
        first = clip.masks[0][target_index]
        kind = rng.choice(3, p=prompt_mix or cfg.prompt_mix)
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
        losses, squares = [], []
        for t, image in enumerate(clip.frames):
            pixels = self.processor(images=image, return_tensors="pt").pixel_values[0]
            out = self.forward(self.model, inference_session=session, frame=pixels, frame_idx=t)
            # the frame's top-level vision features, as the session cached them for its memory encoder
            squares.append(session.cache.get_vision_features(t)["vision_feats"][-1].pow(2).mean())
            logits = out.pred_masks.reshape(1, 1, *out.pred_masks.shape[-2:]).float()
            truth = torch.as_tensor(clip.masks[t][target_index], dtype=torch.float32)[None, None]
            truth = F.interpolate(truth, size=logits.shape[-2:], mode="area")  # SAM 2 stretches frames to a square
            present = torch.tensor([float(clip.masks[t][target_index].sum() > 0)])
            frame_loss = F.binary_cross_entropy_with_logits(
                out.object_score_logits.reshape(1).float(), present
            )
            if t > 0 or kind != 0:  # a mask prompt is copied to the output as is: nothing to learn on frame 0
                frame_loss = frame_loss + F.binary_cross_entropy_with_logits(logits, truth) + _dice_loss(logits, truth).mean()
                if cfg.distractor_weight:
                    others = [m for k, m in enumerate(clip.masks[t]) if k != target_index]
                    frame_loss = frame_loss + cfg.distractor_weight * _covered_loss(logits, truth, others)
            losses.append(frame_loss)
        loss = torch.stack(losses).mean()
        if cfg.feature_penalty:
            loss = loss + cfg.feature_penalty * (torch.stack(squares) - cfg.feature_rms ** 2).clamp(min=0).mean()
        return loss

    def train(self) -> dict:
        cfg = self.config
        self.model.eval()  # eval keeps the inference path's branches (object scores); nothing here uses dropout
        rng = np.random.default_rng(self.seed)
        started = time.perf_counter()
        report = {}
        if cfg.image_steps:
            # single prompted frames: nothing in memory yet, so a mask prompt (copied to the output) teaches nothing
            images = self._phase("tracker images", cfg.image_steps, cfg.image_lr, cfg.image_batch,
                                 lambda step, i: self._clip_loss(rng, _IMAGE_SEED_BASE + step * 1000 + i, frames=1,
                                                                 prompt_mix=(0.0, 0.6, 0.4)))
            report["image_loss_first"], report["image_loss_last"] = images
        seed_base = _TRAIN_SEED_BASE + self.seed * 10**7
        report["loss_first"], report["loss_last"] = self._phase(
            "tracker clips", cfg.steps, cfg.lr, cfg.clips_per_step,
            lambda step, i: self._clip_loss(rng, seed_base + step * 1000 + i))
        return {"steps": cfg.steps, "image_steps": cfg.image_steps, "seconds": time.perf_counter() - started, **report}

    def _phase(self, name: str, steps: int, peak_lr: float, per_step: int, loss_of) -> tuple[float, float]:
        """`steps` updates (warm-up, then a cosine decay from `peak_lr`) of `per_step` samples; (first, last) loss."""
        import torch
        from tqdm import tqdm

        cfg = self.config
        history = []
        with tqdm(total=steps, desc=name, unit="update") as bar:
            for step in range(steps):
                lr = peak_lr * min(1.0, (step + 1) / cfg.warmup_steps) * 0.5 * (1 + np.cos(np.pi * step / steps))
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                losses = [loss for i in range(per_step) if (loss := loss_of(step, i)) is not None]
                loss = torch.stack(losses).mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                self.optimizer.step()
                history.append(loss.item())
                bar.update(1)
                if (step + 1) % cfg.log_every == 0:
                    bar.set_postfix(loss=f"{np.mean(history[-cfg.log_every:]):.3f}")
        return float(np.mean(history[: cfg.log_every])), float(np.mean(history[-cfg.log_every:]))


def initialise_memory_path(model, config: TrackerTrainConfig, seed: int = 0) -> None:
    """Priors for a from-scratch SAM 2: its memory path (see `mask_memory_gain` and `memory_locality`) and its mask
    decoder (`decoder_prompt_prior`)."""
    import torch

    with torch.no_grad():
        model.memory_encoder.mask_downsampler.final_conv.weight.mul_(config.mask_memory_gain)
        model.memory_encoder.feature_projection.weight.div_(config.mask_memory_gain)
        if config.decoder_prompt_prior:
            _prime_decoder(model, config.decoder_match_gain, torch.Generator().manual_seed(seed))
        if not config.memory_locality:
            return
        for layer in model.memory_attention.layers:
            attention = layer.cross_attn_image
            # Rotary layout (Sam2VideoVisionRotaryEmbedding): per head, pairs (2i, 2i+1) turn with the row
            # frequency i and pairs (half + 2i, half + 2i + 1) with the column frequency i, fastest first.
            bias = torch.zeros(attention.head_dim)
            half = attention.head_dim // 2
            for i in range(config.locality_pairs):
                bias[2 * i] = bias[half + 2 * i] = config.memory_locality
            bias = bias.repeat(attention.num_attention_heads)
            attention.q_proj.bias.copy_(bias)
            attention.k_proj.bias.copy_(bias)


def _prime_decoder(model, gain: float, generator) -> None:
    """The mask decoder's start (see `TrackerTrainConfig.decoder_prompt_prior`); call under `torch.no_grad()`."""
    import torch

    decoder = model.mask_decoder
    for embedding in (model.prompt_encoder.point_embed, model.prompt_encoder.not_a_point_embed,
                      decoder.mask_tokens, decoder.iou_token, decoder.obj_score_token):
        embedding.weight.copy_(torch.randn(embedding.weight.shape, generator=generator))
    first = decoder.transformer.layers[0].self_attn
    for projection in (first.q_proj, first.k_proj, first.v_proj, first.o_proj):
        projection.weight.copy_(torch.eye(*projection.weight.shape))
        projection.bias.zero_()
    transformer = decoder.transformer
    attentions = [layer.cross_attn_token_to_image for layer in transformer.layers]
    attentions += [layer.cross_attn_image_to_token for layer in transformer.layers]
    for attention in attentions + [transformer.final_attn_token_to_image]:
        inner, width = attention.q_proj.weight.shape
        rows = torch.linalg.qr(torch.randn(width, inner, generator=generator))[0].T  # inner orthonormal rows
        for projection in (attention.q_proj, attention.k_proj):
            projection.weight.copy_(gain * rows)
            projection.bias.zero_()


def train_tracker(folder: str | os.PathLike, config: TrackerTrainConfig, image_size: int = 128, seed: int = 0,
                  progress=print) -> dict:
    """Build a tiny SAM 2, train it on ShapesWorld clips and save it (save_pretrained) to `folder`."""
    import torch

    from vitron_ros.core.model.sam2_loader import load_sam2_video
    from vitron_ros.core.model.weights import readable_by_all

    from ..tiny_sam2 import build_tiny_sam2

    folder = Path(folder)
    build_tiny_sam2(folder, image_size=image_size, seed=seed, progress=progress)
    model, processor = load_sam2_video(str(folder))
    initialise_memory_path(model, config, seed)
    torch.manual_seed(seed)
    report = TrackerTrainer(model, processor, config, seed).train()
    model.save_pretrained(folder)
    readable_by_all(folder)
    progress(f"tracker trained: {report['steps']} updates in {report['seconds'] / 60:.1f} min, "
             f"loss {report['loss_first']:.3f} -> {report['loss_last']:.3f}; saved {folder}")
    return report
