"""The whole tiny VITRON as one trainable module: LLaVA (vision tower, projector, LM), VITRON heads, SAM.

Every part is the class the pipeline loads (transformers' LlavaForConditionalGeneration, segment-anything's Sam,
VitronHeads); this module only adds the training-time pieces (auxiliary patch probes, the synergy discriminator)
and a batched forward that computes each stage's losses. Inference goes through the pipeline, never through here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vitron_ros.core.model.video_pooling import named_pooling

from ..shapes.world import COLOURS, SHAPES, Scene
from .packing import SEG_TASKS, PackedBatch
from .synergy import SynergyLoss

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MODULE_GROUPS = ("vision", "projector", "lm", "sketch_encoder", "signal_projector", "sam_encoder", "sam_decoder", "aux")


@dataclass
class UserPrompt:
    """A point, box or scribble prompt on one object, as the pipeline sends sketches to the segmenter."""

    scene: int
    object_index: int
    kind: str  # "point", "box" or "scribble"
    points_xy: np.ndarray  # (K, 2) float32 pixels; empty for boxes
    box_xyxy: tuple[float, float, float, float] | None


def patch_labels(scene: Scene, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour and shape class of the object covering most of each patch (0 = background): (grid*grid,) each.

    An object must cover a quarter of the patch to name it. Runs for every scene of every update, so it counts
    pixels per (patch, object) with one bincount instead of a loop over patches.
    """
    ids = scene.object_ids()
    grid, n = ids.shape[0] // patch, len(scene.objects)
    blocks = ids[: grid * patch, : grid * patch].reshape(grid, patch, grid, patch).transpose(0, 2, 1, 3).reshape(-1, patch * patch)
    # counts[k, j]: pixels of object j - 1 in patch k (column 0: background)
    counts = np.bincount((np.arange(len(blocks))[:, None] * (n + 1) + blocks + 1).ravel(), minlength=len(blocks) * (n + 1))
    counts = counts.reshape(len(blocks), n + 1)[:, 1:]
    covered = (counts.max(axis=1) >= 0.25 * patch * patch) if n else np.zeros(len(blocks), bool)
    owner = counts.argmax(axis=1) if n else np.zeros(len(blocks), np.int64)
    colour_of = np.array([list(COLOURS).index(o.spec.colour) + 1 for o in scene.objects] or [0], np.int64)
    shape_of = np.array([SHAPES.index(o.spec.shape) + 1 for o in scene.objects] or [0], np.int64)
    return np.where(covered, colour_of[owner], 0), np.where(covered, shape_of[owner], 0)


def dice_per_mask(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft Dice loss of each (..., H, W) mask -> (...)."""
    probs, targets = logits.sigmoid().flatten(-2), targets.flatten(-2)
    return 1 - (2 * (probs * targets).sum(-1) + 1) / (probs.sum(-1) + targets.sum(-1) + 1)


def iou_per_mask(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of each thresholded (..., H, W) mask with its target -> (...); no gradient (a measurement)."""
    with torch.no_grad():
        pred, truth = (logits > 0).flatten(-2), (targets > 0).flatten(-2)
        return ((pred & truth).sum(-1) / (pred | truth).sum(-1).clamp(min=1)).float()


def decode_masks(sam, image_embeddings, sparse, dense):
    """SAM's MaskDecoder.predict_masks for N prompts on N (possibly different) images.

    The library version repeats one image's embedding for every prompt; training needs each prompt paired with
    its own image, so this is the same computation with the image embeddings gathered per prompt.
    Returns (N, 1 + multimask, H, W) low-res logits and (N, 1 + multimask) predicted IoUs.
    """
    decoder = sam.mask_decoder
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse], dim=1)
    src = image_embeddings + dense
    pos = sam.prompt_encoder.get_dense_pe().expand(src.shape[0], -1, -1, -1)
    b, c, h, w = src.shape
    hs, src = decoder.transformer(src, pos, tokens)
    iou_out, mask_out = hs[:, 0, :], hs[:, 1 : 1 + decoder.num_mask_tokens, :]
    upscaled = decoder.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    hyper = torch.stack([mlp(mask_out[:, i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1)
    b, c, h, w = upscaled.shape
    masks = (hyper @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
    return masks, decoder.iou_prediction_head(iou_out)


class TrainableVitron(nn.Module):
    def __init__(self, llava, heads, sam, video_pooling: str | None = None):
        super().__init__()
        self.llava, self.heads, self.sam = llava, heads, sam
        self.video_pooling = named_pooling(video_pooling)  # clips become tokens as the runtime pools them
        width = llava.config.text_config.hidden_size
        classes = (len(COLOURS) + 1) + (len(SHAPES) + 1)
        # Auxiliary per-patch colour/shape probes: bind colour to shape early in both image encoders.
        # The probes read normalised features: a linear probe on raw features rewards ever larger feature norms.
        self.aux_vision = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, classes))
        self.aux_sam = nn.Sequential(nn.GroupNorm(1, sam.prompt_encoder.embed_dim), nn.Conv2d(sam.prompt_encoder.embed_dim, classes, 1))
        part = heads.config.synergy_dim
        self.synergy = SynergyLoss(part, len(SEG_TASKS)) if part > 0 else None
        vision_cfg = llava.config.vision_config
        self.vision_patch = vision_cfg.patch_size
        self.sam_patch = sam.image_encoder.img_size // sam.prompt_encoder.image_embedding_size[0]
        self.register_buffer("clip_mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("clip_std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by the names training stages use to say what they train."""
        model = self.llava.model
        return {
            "vision": list(model.vision_tower.parameters()),
            "projector": list(model.multi_modal_projector.parameters()),
            "lm": list(model.language_model.parameters()) + list(self.llava.lm_head.parameters()),
            "sketch_encoder": list(self.heads.sketch_encoder.parameters()),
            "signal_projector": list(self.heads.signal_projector.parameters()),
            "sam_encoder": list(self.sam.image_encoder.parameters()),
            "sam_decoder": list(self.sam.mask_decoder.parameters()) + list(self.sam.prompt_encoder.parameters()),
            "aux": list(self.aux_vision.parameters()) + list(self.aux_sam.parameters())
            + (list(self.synergy.parameters()) if self.synergy is not None else []),
        }

    # -- encoders ----------------------------------------------------------------------------------------------
    def clip_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 of the vision tower's size -> CLIPImageProcessor's normalised pixels."""
        return (images.permute(0, 3, 1, 2).float() / 255.0 - self.clip_mean) / self.clip_std

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        cfg = self.llava.config
        out = self.llava.model.get_image_features(
            pixel_values=self.clip_pixels(images),
            vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy,
        )
        return torch.stack(list(out.pooler_output))

    def video_features(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, 3) uint8 frames -> (B, M, D): VitronLLM.encode_video's pooling, batched."""
        b, t = clips.shape[:2]
        frames = self.image_features(clips.flatten(0, 1))
        frames = frames.view(b, t, *frames.shape[1:])
        return self.video_pooling.pool(frames, int(round(frames.shape[2] ** 0.5)))

    def sam_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        return self.sam.image_encoder(self.sam.preprocess(images.permute(0, 3, 1, 2).float()))

    # -- forward -----------------------------------------------------------------------------------------------
    def forward(self, batch: PackedBatch, scenes: list[Scene], prompts: list[UserPrompt],
                synergy_strength: float = 0.0, need_masks: bool = True, clips: np.ndarray | None = None,
                ) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        if clips is not None:  # a batch of clips: questions about them, text loss only
            features = self.video_features(torch.as_tensor(clips))
            losses["text"] = self._text_loss(batch, self._language(batch, scenes, features))
            return losses
        images = torch.as_tensor(np.stack([s.image for s in scenes]))
        features = self.image_features(images)
        losses["aux_vision"] = self._aux_loss(self.aux_vision(features), scenes, self.vision_patch)

        hidden = self._language(batch, scenes, features)
        losses["text"] = self._text_loss(batch, hidden)

        if need_masks and (batch.segs or prompts):
            sam_features = self.sam_embeddings(images)
            aux_logits = self.aux_sam(sam_features).flatten(2).transpose(1, 2)
            losses["aux_sam"] = self._aux_loss(aux_logits, scenes, self.sam_patch)
            losses.update(self._mask_losses(batch, hidden, sam_features, scenes, prompts, synergy_strength))
        return losses

    def _language(self, batch: PackedBatch, scenes: list[Scene], features: torch.Tensor) -> torch.Tensor:
        ids = torch.as_tensor(batch.input_ids)
        embeds = self.llava.get_input_embeddings()(ids)
        s, n = batch.image_start, batch.image_tokens
        embeds = torch.cat([embeds[:, :s], features.to(embeds.dtype), embeds[:, s + n :]], dim=1)
        if batch.sketches:
            rows = torch.as_tensor([k.scene for k in batch.sketches])
            cols = torch.as_tensor([k.position for k in batch.sketches])
            embeds = embeds.index_put((rows, cols), self._sketch_embeddings(batch, scenes, features))
        mask = torch.as_tensor(batch.attention)[:, None]
        out = self.llava.model.language_model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=torch.as_tensor(batch.position_ids)
        )
        return out.last_hidden_state

    def _sketch_embeddings(self, batch: PackedBatch, scenes: list[Scene], features: torch.Tensor) -> torch.Tensor:
        """The sketch encoder on ground-truth region masks (at inference the segmenter's mask of the sketch)."""
        grid = int(round(features.shape[1] ** 0.5))
        masks = torch.as_tensor(np.stack([scenes[k.scene].objects[k.object_index].mask for k in batch.sketches]))
        # Area coverage per patch: what region_grid_weights computes with cv2.INTER_AREA.
        weights = F.adaptive_avg_pool2d(masks[:, None].float(), grid).flatten(1)
        pooled = (weights[:, :, None] * features[[k.scene for k in batch.sketches]]).sum(1) / weights.sum(1, keepdim=True)
        side = scenes[0].size
        boxes = torch.as_tensor([scenes[k.scene].objects[k.object_index].box_xyxy for k in batch.sketches]) / side
        return pooled + self.heads.sketch_encoder.location(boxes.float())

    def _text_loss(self, batch: PackedBatch, hidden: torch.Tensor) -> torch.Tensor:
        rows = torch.as_tensor(batch.label_scene)
        logits = self.llava.lm_head(hidden[rows, torch.as_tensor(batch.label_position)])
        per_token = F.cross_entropy(logits.float(), torch.as_tensor(batch.label_token), reduction="none")
        # A sample of n reply tokens weighs sqrt(n): a plain token mean would leave one-word VQA answers almost no
        # gradient next to 50-token invocations, and a per-sample mean starves the long replies' tokens (copying
        # the referring phrase, box digits) so much that a first run never learned to copy.
        samples = torch.as_tensor(batch.label_sample)
        count = torch.zeros(len(batch.sample_tasks)).index_add_(0, samples, torch.ones_like(per_token))
        weight = count.clamp(min=1).rsqrt()[samples]
        return (weight * per_token).sum() / weight.sum()

    def _aux_loss(self, logits: torch.Tensor, scenes: list[Scene], patch: int) -> torch.Tensor:
        labels = [patch_labels(s, patch) for s in scenes]
        colours = torch.as_tensor(np.stack([c for c, _ in labels]))
        shapes = torch.as_tensor(np.stack([s for _, s in labels]))
        n_colour = len(COLOURS) + 1
        return F.cross_entropy(logits[..., :n_colour].flatten(0, 1), colours.flatten()) + F.cross_entropy(
            logits[..., n_colour:].flatten(0, 1), shapes.flatten()
        )

    def _mask_losses(self, batch, hidden, sam_features, scenes, prompts, synergy_strength):
        prompt_encoder = self.sam.prompt_encoder
        groups = []  # (scene indices, object indices, sparse tokens, dense)
        dense_shape = sam_features.shape[-2:]

        def no_mask(n):
            return prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(n, -1, *dense_shape)

        out: dict[str, torch.Tensor] = {}
        if batch.segs:
            h = hidden[[t.scene for t in batch.segs], [t.position for t in batch.segs]]
            projector = self.heads.signal_projector
            if self.synergy is not None:
                invariant, specific = projector.parts(h)
                signal = projector.fuse(torch.cat([invariant, specific], dim=-1))
                if synergy_strength > 0:
                    tasks = torch.as_tensor([t.task for t in batch.segs])
                    out.update(self.synergy(invariant, specific, tasks, synergy_strength))
            else:
                signal = projector(h)
            # the signal alone prompts SAM: no reply carries a box with its [SEG] (instructions._referring says why)
            groups.append(("signal", [t.scene for t in batch.segs], [t.object_index for t in batch.segs],
                           signal[:, None], no_mask(len(batch.segs))))
        for kind in ("point", "scribble", "box"):
            picked = [p for p in prompts if p.kind == kind]
            if not picked:
                continue
            if kind == "box":
                sparse, dense = prompt_encoder(points=None, boxes=torch.as_tensor(np.stack([p.box_xyxy for p in picked]), dtype=torch.float32), masks=None)
            else:
                coords = torch.as_tensor(np.stack([p.points_xy for p in picked]), dtype=torch.float32)
                labels = torch.ones(coords.shape[:2], dtype=torch.int64)
                sparse, dense = prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            groups.append(("prompt", [p.scene for p in picked], [p.object_index for p in picked], sparse, dense))

        # Per prompt family ("signal" / "prompt"): summed mask loss and IoU, and how many masks they cover.
        mask_sum: dict[str, torch.Tensor] = {}
        iou_sum: dict[str, torch.Tensor] = {}
        count: dict[str, int] = {}
        quality_sum = 0
        for name, scene_ids, object_ids, sparse, dense in groups:
            all_logits, all_quality = decode_masks(self.sam, sam_features[scene_ids], sparse, dense)
            logits, quality = all_logits[:, 0], all_quality[:, 0]  # single-mask output: what the profile serves
            target = torch.as_tensor(np.stack([scenes[s].objects[o].mask for s, o in zip(scene_ids, object_ids)])).float()
            loss = F.binary_cross_entropy_with_logits(logits, target) + dice_per_mask(logits, target).mean()
            if name == "prompt":
                loss = loss + self._multimask_loss(all_logits[:, 1:], all_quality[:, 1:], target)
            measured = iou_per_mask(logits, target)
            mask_sum[name] = mask_sum.get(name, 0) + loss * len(scene_ids)
            iou_sum[name] = iou_sum.get(name, 0) + measured.sum()
            count[name] = count.get(name, 0) + len(scene_ids)
            quality_sum = quality_sum + F.mse_loss(quality, measured, reduction="sum")
        for name, n in count.items():
            out[f"mask_{name}"] = mask_sum[name] / n
            out[f"iou_{name}"] = iou_sum[name] / n
        if count:
            out["quality"] = quality_sum / sum(count.values())
        return out

    @staticmethod
    def _multimask_loss(logits: torch.Tensor, quality: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """SAM's ambiguity-aware loss for the three multimask tokens ("everything" mode uses them): the best of
        the three takes the mask loss, and each one's quality score learns its own IoU."""
        expanded = target[:, None].expand_as(logits)
        bce = F.binary_cross_entropy_with_logits(logits, expanded, reduction="none").flatten(2).mean(-1)
        loss = bce + dice_per_mask(logits, expanded)
        return loss.min(dim=1).values.mean() + F.mse_loss(quality, iou_per_mask(logits, expanded))


def user_prompts(scenes: list[Scene], rng: np.random.Generator, per_scene: int = 2) -> list[UserPrompt]:
    """Point, scribble and box prompts on random objects: the segmenter's share of region understanding."""
    from ..shapes.instructions import region_sketch

    prompts = []
    for s, scene in enumerate(scenes):
        for _ in range(per_scene):
            index = int(rng.integers(len(scene.objects)))
            kind = ("point", "scribble", "box")[int(rng.integers(3))]
            sketch = region_sketch(scene.objects[index], kind, rng)
            points = sketch.points_xy
            if kind == "scribble":  # a fixed count per batch group; the pipeline sends whatever the user drew
                points = points[rng.integers(len(points), size=3)]
            prompts.append(UserPrompt(s, index, kind, np.asarray(points, np.float32), sketch.box_xyxy))
    return prompts
