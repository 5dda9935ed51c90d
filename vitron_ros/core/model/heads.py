"""VITRON's own trainable parts next to the LLaVA checkpoint: the sketch (region) encoder and the signal projector.

Both live in `vitron_heads.safetensors` inside the LLM folder. A published LLaVA checkpoint has no such file;
the pipeline then serves regions as text boxes and masks through the text (box) path.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import CheckpointLoadError

HEADS_FILE = "vitron_heads.safetensors"
HEADS_FORMAT = "vitron_heads/1"


@dataclass(frozen=True)
class HeadsConfig:
    hidden_size: int  # LLM hidden width (also the projected image-feature width LLaVA splices)
    prompt_dim: int  # the segmenter's prompt-token width (SAM: 256; tiny SAM: 64)
    seg_token: str = "[SEG]"  # reply token whose hidden state becomes a signal embedding
    sketch_token: str = "<sketch>"  # prompt placeholder replaced by a region embedding
    # Cross-task synergy (VITRON sec. 4.3): > 0 splits the signal into a task-invariant and a task-specific part
    # of this width each; training makes the invariant part useless to a task discriminator (gradient reversal).
    synergy_dim: int = 0
    # False: a signal projector only (a converted LISA / GLaMM checkpoint): sketches reach the LLM as text boxes
    sketch_encoder: bool = True


def region_grid_weights(mask_square: np.ndarray, grid: int) -> np.ndarray:
    """Fraction of each vision patch covered by a (side, side) bool mask -> (grid, grid) float32, row-major (y, x).

    Area averaging keeps thin regions (a scribble, a narrow box) from vanishing between patch centres.
    """
    import cv2

    if mask_square.ndim != 2 or mask_square.shape[0] != mask_square.shape[1]:
        raise ValueError(f"region mask must be square (side, side), got {mask_square.shape}")
    return cv2.resize(mask_square.astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA)


def _modules():
    import torch
    from torch import nn

    class SketchEncoder(nn.Module):
        """Region embedding = mean of projected patch features inside the region + embedding of its box.

        The box enters as (x1, y1, x2, y2) normalised to the padded square, x first: the published VITRON code fed
        (y, x) here, which silently swaps width and height for every non-square region.
        """

        def __init__(self, hidden_size: int):
            super().__init__()
            self.location = nn.Sequential(nn.Linear(4, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size))

        @staticmethod
        def pool(patch_features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
            """(N, D) patch features, (N,) coverage weights -> (D,) weighted mean."""
            weights = weights.to(patch_features.dtype)
            total = weights.sum()
            if float(total) <= 0:
                raise ValueError("region covers no part of the image")
            return (weights[:, None] * patch_features).sum(dim=0) / total

        def forward(self, patch_features: torch.Tensor, weights: torch.Tensor, box_norm: torch.Tensor):
            return self.pool(patch_features, weights) + self.location(box_norm.to(patch_features.dtype))

    class SignalProjector(nn.Module):
        """[SEG] hidden state -> the segmenter's prompt-token space (LISA's Linear-ReLU-Linear)."""

        def __init__(self, hidden_size: int, prompt_dim: int):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, prompt_dim))

        def forward(self, hidden: torch.Tensor) -> torch.Tensor:
            return self.net(hidden)

    class SynergySignalProjector(nn.Module):
        """[SEG] hidden state -> task-invariant part + task-specific part -> the segmenter's prompt-token space."""

        def __init__(self, hidden_size: int, prompt_dim: int, part_dim: int):
            super().__init__()
            self.invariant = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, part_dim))
            self.specific = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, part_dim))
            self.fuse = nn.Linear(2 * part_dim, prompt_dim)

        def parts(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.invariant(hidden), self.specific(hidden)

        def forward(self, hidden: torch.Tensor) -> torch.Tensor:
            return self.fuse(torch.cat(self.parts(hidden), dim=-1))

    class VitronHeads(nn.Module):
        def __init__(self, config: HeadsConfig):
            super().__init__()
            self.config = config
            self.sketch_encoder = SketchEncoder(config.hidden_size) if config.sketch_encoder else None
            if config.synergy_dim > 0:
                self.signal_projector = SynergySignalProjector(config.hidden_size, config.prompt_dim, config.synergy_dim)
            else:
                self.signal_projector = SignalProjector(config.hidden_size, config.prompt_dim)

    return VitronHeads


def build_heads(config: HeadsConfig):
    return _modules()(config)


def save_heads(heads, folder: str | os.PathLike) -> Path:
    from safetensors.torch import save_file

    path = Path(folder) / HEADS_FILE
    state = {k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}
    save_file(state, str(path), metadata={"format": HEADS_FORMAT, "config": json.dumps(asdict(heads.config))})
    return path


def load_heads(folder: str | os.PathLike):
    """The heads saved next to an LLM checkpoint, or None when the checkpoint has none."""
    from safetensors import safe_open

    from .weights import load_strict, read_state_dict

    path = Path(folder) / HEADS_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("format") != HEADS_FORMAT:
            raise CheckpointLoadError(f"{path}: expected format {HEADS_FORMAT!r}, got {metadata.get('format')!r}")
        config = HeadsConfig(**json.loads(metadata["config"]))
    except CheckpointLoadError:
        raise
    except Exception as exc:
        raise CheckpointLoadError(f"cannot read VITRON heads {path}: {type(exc).__name__}: {exc}") from None
    heads = build_heads(config)
    load_strict(heads, read_state_dict(path), str(path))
    return heads.eval()
