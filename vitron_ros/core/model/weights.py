"""Safe state-dict reading: safetensors, or torch.load with weights_only=True. Never an unrestricted pickle."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import CheckpointLoadError, CheckpointNotFoundError


def read_state_dict(path: str | os.PathLike, fetch_hint: str = "") -> dict:
    """Read a state dict from .safetensors or a PyTorch .pth/.pt/.bin file, on CPU."""
    import torch

    path = Path(path)
    if not path.is_file():
        hint = f"; {fetch_hint}" if fetch_hint else ""
        raise CheckpointNotFoundError(f"checkpoint not found: {path}{hint}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt files raise many types (pickle, zip, safetensors); report them all alike
        raise CheckpointLoadError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # training checkpoints (sam2 style) nest the weights under "model"
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointLoadError(f"checkpoint {path} is not a state dict of tensors")
    return state


def load_strict(module, state: dict, source: str) -> None:
    """load_state_dict(strict=True) with a message that names the file and the first mismatched keys."""
    result = module.load_state_dict(state, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"{len(result.missing_keys)} missing keys (e.g. {result.missing_keys[:3]})")
    if result.unexpected_keys:
        problems.append(f"{len(result.unexpected_keys)} unexpected keys (e.g. {result.unexpected_keys[:3]})")
    if problems:
        raise CheckpointLoadError(f"checkpoint {source} does not match the architecture: {'; '.join(problems)}")


def readable_by_all(path: Path) -> None:
    """tempfile creates 0600 files and 0700 folders; checkpoints are shared (other users, a ROS node's account)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o755 if path.is_dir() else 0o644) & ~umask)
    if path.is_dir():
        for child in path.rglob("*"):
            os.chmod(child, (0o755 if child.is_dir() else 0o644) & ~umask)


@contextmanager
def replacing_folder(destination: Path) -> Iterator[Path]:
    """A staging folder beside `destination` to write a checkpoint into; once the block succeeds it replaces
    `destination`, readable by all. An interrupted write never leaves a half-written checkpoint that loads as corrupt."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=".staging-"))
    try:
        yield staging
        readable_by_all(staging)
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
