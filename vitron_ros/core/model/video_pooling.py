"""How a clip's frame features become the LLM's video tokens: one registry, keyed by the name a checkpoint's facts give.

    video_chatgpt          VITRON's (from Video-ChatGPT): each patch averaged over the T frames (grid * grid tokens:
                           what is where), then each frame's patches averaged (T tokens: what changes when).
                           Published VITRON checkpoints were trained on it, so it is the default.
    time_mean_frame_grid4  the same time-averaged patches, then each frame pooled to a 4 x 4 grid (16 T tokens). One
                           token per frame keeps no position, so which way an object moved is not in the tokens
                           (the shapes LLM answered direction questions at 0.17, four directions); a coarse grid per
                           frame keeps where things are in each frame.

Both the runtime (VitronLLM.encode_video) and the lab's trainer pool through this table, so a checkpoint is read
the way it was trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import CheckpointLoadError

DEFAULT_VIDEO_POOLING = "video_chatgpt"


@dataclass(frozen=True)
class VideoPooling:
    pool: Callable  # (features (..., T, N, D) torch, grid) -> (..., M, D): the grid * grid spatial tokens come first
    tokens: Callable[[int, int], int]  # (grid, frames) -> M


def _video_chatgpt(features, grid: int):
    import torch

    return torch.cat([features.mean(dim=-3), features.mean(dim=-2)], dim=-2)


def _time_mean_frame_grid(cells: int) -> VideoPooling:
    def pool(features, grid: int):
        import torch
        import torch.nn.functional as F

        *lead, frames, n, width = features.shape
        if n != grid * grid:
            raise ValueError(f"{n} patch features per frame are not a {grid} x {grid} grid")
        maps = features.reshape(-1, grid, grid, width).permute(0, 3, 1, 2)  # (L * T, D, grid, grid)
        coarse = F.adaptive_avg_pool2d(maps, cells).flatten(2).transpose(1, 2)  # (L * T, cells^2, D), row-major
        coarse = coarse.reshape(*lead, frames * cells * cells, width)
        return torch.cat([features.mean(dim=-3), coarse], dim=-2)

    return VideoPooling(pool, lambda grid, frames: grid * grid + cells * cells * frames)


VIDEO_POOLINGS: dict[str, VideoPooling] = {
    "video_chatgpt": VideoPooling(_video_chatgpt, lambda grid, frames: grid * grid + frames),
    "time_mean_frame_grid4": _time_mean_frame_grid(4),
}


def named_pooling(name: str | None, where: str = "checkpoint") -> VideoPooling:
    """The pooling called `name` (None: VITRON's); an unknown name is a load error that lists the known ones."""
    name = name or DEFAULT_VIDEO_POOLING
    if name not in VIDEO_POOLINGS:
        raise CheckpointLoadError(f"{where} pools clips with {name!r}, which this version does not know; "
                                  f"known: {sorted(VIDEO_POOLINGS)}")
    return VIDEO_POOLINGS[name]
