"""SAM segmenter: point, box, mask and signal-embedding prompts, multimask output, and "everything" mode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..config import RuntimeConfig
from ..backends import Encoder, Exportable
from ..errors import VitronInputError
from ..geometry import check_box, check_image, check_point
from .base import Frame, SpecialistCall, SpecialistOutput

SAM_ARCHS = ("vit_h", "vit_l", "vit_b", "tiny")


@dataclass(frozen=True)
class SegmenterConfig:
    arch: str  # vit_h | vit_l | vit_b as segment-anything builds them, or "tiny"
    checkpoint: str  # SAM state dict: official .pth or .safetensors
    url: str | None = None  # where `vitron models fetch` downloads the checkpoint from
    multimask_output: bool = True  # three candidate masks per prompt; the best-scored one is returned first
    points_per_side: int = 32  # "everything" mode grid density
    pred_iou_thresh: float = 0.88  # "everything" mode filters (segment-anything's defaults)
    stability_score_thresh: float = 0.95
    min_mask_region_area: int = 0
    # "everything" mode memory: segment-anything upsamples each batch of candidate masks to the input size
    # (points_per_batch x 3 x H x W float32: 9.2 GB at 4000x3000 with its default of 64), so the grid runs on the
    # image scaled to at most everything_max_side (SAM's encoder sees 1024 px anyway) and masks are scaled back.
    everything_max_side: int = 1024
    points_per_batch: int = 16
    dtype: str = "float16"  # used on CUDA; CPU always runs float32

    paths: ClassVar[tuple[str, ...]] = ("checkpoint",)  # fields where ${cache} / ${share} expand

    def check(self, where: str) -> None:
        if self.arch not in SAM_ARCHS:
            raise VitronInputError(f"{where}.arch: expected one of {SAM_ARCHS}, got {self.arch!r}")

# SAM's mask prompt is low-resolution logits; a user's binary mask becomes confident logits of either sign.
_MASK_PROMPT_LOGIT = 8.0


@dataclass
class _EncodedImage:
    features: object  # torch.Tensor (1, C, h, w) SAM image embedding
    input_size: tuple[int, int]  # resized (H, W) before padding to the encoder's square
    original_size: tuple[int, int]


class SamSegmenter:
    name = "segmenter"
    tasks = frozenset({"segmentation", "everything"})

    def __init__(self, sam, config: SegmenterConfig, device: str = "cpu", dtype: str = "float32",
                 runtime: RuntimeConfig | None = None, progress=print):
        """`dtype`: the weights' and activations' precision (float16 / bfloat16 run under autocast, as SAM's prompt
        encoder mixes float32 coordinates with its weights). The image encoder runs on `runtime`'s backend."""
        from segment_anything.utils.transforms import ResizeLongestSide

        from ..backends import load_encoder, resolve_dtype

        runtime = runtime or RuntimeConfig()
        self.sam = sam.to(device=device, dtype=resolve_dtype(dtype)).eval()
        self.config = config
        self.device = device
        self.dtype = dtype
        self.transform = ResizeLongestSide(self.sam.image_encoder.img_size)  # SAM's own resize, as SamPredictor
        self.image_encoder = load_encoder(sam_image_encoder_export(self.sam), runtime, device, dtype, progress)
        if self.image_encoder.backend != "torch" or runtime.compile:  # SamPredictor (everything mode) calls it too
            install_sam_image_encoder(self.sam, self.image_encoder)

    @classmethod
    def from_profile(cls, profile, device: str = "cpu", progress=print) -> SamSegmenter:
        from ..model.sam_loader import load_sam

        cfg = profile.section("segmenter")
        hint = profile.missing_hint()
        sam = load_sam(cfg.arch, cfg.checkpoint, fetch_hint=hint)
        return cls(sam, cfg, device, profile.runtime.dtype_for(cfg.dtype, device), profile.runtime, progress)

    def encoders(self) -> dict:
        """Encoder name -> its backend Encoder (reported in diagnostics)."""
        return {self.image_encoder.name: self.image_encoder}

    def modules(self) -> list:
        """The torch modules whose weights this specialist holds (for memory accounting)."""
        return [self.sam]

    def exportables(self) -> list:
        """The image encoder and the mask decoder (sparse prompt tokens in, so [SEG] embeddings reach it)."""

        return [sam_image_encoder_export(self.sam), sam_mask_decoder_export(self.sam)]

    def _autocast(self):
        import torch

        if self.dtype == "float32":
            return torch.autocast(self.device.split(":")[0], enabled=False)
        return torch.autocast(self.device.split(":")[0], dtype=getattr(torch, self.dtype))

    @property
    def prompt_dim(self) -> int:
        """Width of SAM's prompt tokens: the space signal embeddings are projected into."""
        return int(self.sam.prompt_encoder.embed_dim)

    def run(self, frame: Frame, calls: Sequence[SpecialistCall]) -> list[SpecialistOutput | Exception]:
        import torch

        image = check_image(frame.image)
        outputs: list[SpecialistOutput | Exception] = []
        with torch.inference_mode(), self._autocast():
            for call in calls:
                try:
                    if call.task == "everything":
                        outputs.append(self.segment_everything(image))
                    elif call.task == "segmentation":
                        outputs.append(self._segment_prompted(self.encode(frame), call))
                    else:
                        raise VitronInputError(f"segmenter has no task {call.task!r}; tasks: {sorted(self.tasks)}")
                except (VitronInputError, ValueError) as exc:
                    outputs.append(exc)
        return outputs

    def encode(self, frame: Frame) -> _EncodedImage:
        """SAM's image embedding of the frame, computed once per frame (SamPredictor.set_image's steps)."""
        import torch

        key = ("sam_embedding", id(self))
        if key not in frame.cache:
            image = frame.image
            resized = self.transform.apply_image(image)
            tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
            with torch.inference_mode():
                features = self.sam.image_encoder(self.sam.preprocess(tensor))
            frame.cache[key] = _EncodedImage(features, tuple(tensor.shape[-2:]), tuple(image.shape[:2]))
        return frame.cache[key]

    def _segment_prompted(self, encoded: _EncodedImage, call: SpecialistCall) -> SpecialistOutput:
        import torch

        height, width = encoded.original_size
        sam, transform = self.sam, self.transform
        points = np.asarray(call.points_xy, dtype=np.float32).reshape(-1, 2)
        labels = np.asarray(call.point_labels, dtype=np.int64).reshape(-1)
        if len(points) != len(labels):
            raise VitronInputError(f"{len(points)} points but {len(labels)} point labels")
        for i, point in enumerate(points):
            check_point(point, width, height, name=f"point {i}")
        if not len(points) and call.box_xyxy is None and call.mask is None and call.embedding is None:
            raise VitronInputError("segmentation needs a prompt: a point, a box, a mask or a signal embedding")

        point_prompt = box_prompt = mask_prompt = None
        if len(points):
            coords = transform.apply_coords(points, (height, width))
            point_prompt = (
                torch.as_tensor(coords, dtype=torch.float32, device=self.device)[None],
                torch.as_tensor(labels, dtype=torch.int64, device=self.device)[None],
            )
        if call.box_xyxy is not None:
            box = np.asarray(check_box(call.box_xyxy, width, height), dtype=np.float32)
            box_prompt = torch.as_tensor(transform.apply_boxes(box, (height, width)), device=self.device)
        if call.mask is not None:
            mask_prompt = self._mask_to_logits(call.mask, height, width)

        sparse, dense = sam.prompt_encoder(points=point_prompt, boxes=box_prompt, masks=mask_prompt)
        if call.embedding is not None:
            embedding = np.asarray(call.embedding, dtype=np.float32).reshape(-1)
            if embedding.shape[0] != self.prompt_dim:
                raise VitronInputError(
                    f"signal embedding has width {embedding.shape[0]}, SAM prompt tokens need {self.prompt_dim}"
                )
            # The projected [SEG] hidden state joins the sparse prompt tokens, as LISA feeds SAM.
            token = torch.as_tensor(embedding, device=self.device).view(1, 1, -1).to(sparse.dtype)
            sparse = torch.cat([sparse, token], dim=1)
        low_res, quality = sam.mask_decoder(
            image_embeddings=encoded.features,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=call.multimask and self.config.multimask_output,
        )
        masks = sam.postprocess_masks(low_res.float(), encoded.input_size, encoded.original_size) > sam.mask_threshold
        masks_np = masks[0].cpu().numpy()
        scores = quality[0].float().cpu().numpy()
        order = np.argsort(-scores, kind="stable")
        return SpecialistOutput(masks=masks_np[order], scores=scores[order].astype(np.float32))

    def _mask_to_logits(self, mask: np.ndarray, height: int, width: int):
        """A user's (H, W) bool mask -> SAM's low-resolution mask-prompt logits, in the encoder's padded frame."""
        import cv2
        import torch
        import torch.nn.functional as F

        mask = np.asarray(mask)
        if mask.shape != (height, width):
            raise VitronInputError(f"mask prompt has shape {mask.shape}, image is {(height, width)}")
        side = self.sam.image_encoder.img_size
        resized_h, resized_w = self.transform.get_preprocess_shape(height, width, side)
        resized = cv2.resize(mask.astype(np.float32), (resized_w, resized_h), interpolation=cv2.INTER_LINEAR)
        tensor = torch.as_tensor(resized, device=self.device)[None, None]
        tensor = F.pad(tensor, (0, side - resized_w, 0, side - resized_h))  # SAM pads right and bottom
        tensor = F.interpolate(tensor, size=self.sam.prompt_encoder.mask_input_size, mode="bilinear", align_corners=False)
        return (tensor * 2.0 - 1.0) * _MASK_PROMPT_LOGIT

    def segment_everything(self, image: np.ndarray) -> SpecialistOutput:
        """Automatic mask generation over a point grid (segment-anything's generator), best-scored first.

        Bounded in memory at any input size: the generator works on the image scaled to at most
        `everything_max_side` in `points_per_batch` batches; the masks come back at the input's size."""
        import cv2
        from segment_anything import SamAutomaticMaskGenerator

        cfg = self.config
        generator = SamAutomaticMaskGenerator(
            self.sam,
            points_per_side=cfg.points_per_side,
            points_per_batch=cfg.points_per_batch,
            pred_iou_thresh=cfg.pred_iou_thresh,
            stability_score_thresh=cfg.stability_score_thresh,
            min_mask_region_area=cfg.min_mask_region_area,
        )
        height, width = image.shape[:2]
        scale = min(1.0, cfg.everything_max_side / max(height, width))
        work = image if scale == 1.0 else cv2.resize(
            image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
        records = sorted(generator.generate(work), key=lambda r: -r["predicted_iou"])
        masks = np.zeros((len(records), height, width), bool)
        for i, record in enumerate(records):
            mask = record["segmentation"]
            masks[i] = mask if scale == 1.0 else cv2.resize(mask.astype(np.uint8), (width, height),
                                                            interpolation=cv2.INTER_NEAREST) > 0
        scores = np.asarray([r["predicted_iou"] for r in records], dtype=np.float32)
        return SpecialistOutput(masks=masks, scores=scores, labels=tuple(f"object {i}" for i in range(len(records))))


# -- exports: trace-friendly wrappers for the backends (ONNX Runtime, TensorRT), checked in tests/test_backends.py --

def sam_image_encoder_export(sam) -> Exportable:
    """SAM's ViT: (1, 3, S, S) preprocessed (normalised, padded) image -> (1, C, S/16, S/16) embedding."""
    import torch
    side = sam.image_encoder.img_size
    return Exportable("sam_image_encoder", sam.image_encoder.eval(), (torch.randn(1, 3, side, side),),
                      ("image",), ("embedding",))


def sam_mask_decoder_export(sam) -> Exportable:
    """SAM's mask decoder on sparse prompt tokens (points, box corners and the projected [SEG] state, as the prompt
    encoder and the signal projector give them) and the dense prompt -> every mask token's low-res mask and IoU.

    Single-mask output is token 0, multimask tokens 1.. (segment-anything's MaskDecoder slices the same way)."""
    import torch
    from torch import nn

    class SamMaskDecoderExport(nn.Module):
        def __init__(self, sam):
            super().__init__()
            self.mask_decoder = sam.mask_decoder
            self.register_buffer("image_pe", sam.prompt_encoder.get_dense_pe().detach().clone())

        def forward(self, image_embeddings, sparse_prompt_embeddings, dense_prompt_embeddings):
            return self.mask_decoder.predict_masks(
                image_embeddings=image_embeddings,
                image_pe=self.image_pe,
                sparse_prompt_embeddings=sparse_prompt_embeddings,
                dense_prompt_embeddings=dense_prompt_embeddings,
            )

    dim = sam.prompt_encoder.embed_dim
    h, w = sam.prompt_encoder.image_embedding_size
    example = (torch.randn(1, dim, h, w), torch.randn(1, 3, dim), torch.randn(1, dim, h, w))
    return Exportable("sam_mask_decoder", SamMaskDecoderExport(sam).eval(), example,
                      ("image_embeddings", "sparse_prompt_embeddings", "dense_prompt_embeddings"),
                      ("low_res_masks", "iou_predictions"),
                      dynamic={"sparse_prompt_embeddings": {1: "prompt_tokens"}},
                      shape_range={"prompt_tokens": (1, 3, 8)})


def install_sam_image_encoder(sam, encoder: Encoder) -> None:
    """Put a non-torch (or compiled) encoder where SamPredictor and the automatic mask generator call it."""
    from torch import nn

    class BackendImageEncoder(nn.Module):
        def __init__(self, encoder: Encoder, img_size: int):
            super().__init__()
            self.encoder, self.img_size = encoder, img_size

        def forward(self, x):
            return self.encoder(x)[0].to(x.dtype)

    sam.image_encoder = BackendImageEncoder(encoder, sam.image_encoder.img_size)
