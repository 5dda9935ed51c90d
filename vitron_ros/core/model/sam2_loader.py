"""SAM 2 video models through transformers (Sam2VideoModel + Sam2VideoProcessor).

Published checkpoints (facebook/sam2.1-hiera-tiny ... -large) and the tiny ones the lab builds and trains
(vitron_lab.tiny_sam2) are the same classes, saved with `save_pretrained` and loaded by `load_sam2_video`, so tests
exercise the loading path users run.
"""

from __future__ import annotations

from ..errors import CheckpointLoadError
from .vitron_llm import resolve_model_path


def load_sam2_video(model: str, revision: str | None = None, device: str = "cpu", dtype: str = "float16",
                    fetch_hint: str = ""):
    """(Sam2VideoModel in eval mode, Sam2VideoProcessor) from a local folder or the local hub cache."""
    import torch
    from transformers import Sam2VideoModel, Sam2VideoProcessor

    path = resolve_model_path(model, revision, fetch_hint, what="SAM 2 checkpoint")
    torch_dtype = getattr(torch, dtype) if device.startswith("cuda") else torch.float32
    try:
        processor = Sam2VideoProcessor.from_pretrained(path)
        network = Sam2VideoModel.from_pretrained(path, dtype=torch_dtype).to(device).eval()
    except Exception as exc:  # corrupt or mismatched files raise many types; report them all alike
        raise CheckpointLoadError(f"cannot load SAM 2 checkpoint {path}: {type(exc).__name__}: {exc}") from None
    return network, processor
