"""Reading and writing images as HWC uint8 RGB numpy arrays."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import VitronInputError


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; greyscale and alpha are converted, 16-bit is scaled to 8."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise VitronInputError(f"image file not found: {path}")
    if not path.is_file():
        raise VitronInputError(f"image path is not a file: {path}")
    data = np.fromfile(path, dtype=np.uint8)  # cv2.imread cannot say *why* it failed; decode from bytes instead
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise VitronInputError(f"cannot decode image file {path}: not a readable PNG/JPEG/BMP/TIFF image")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.dtype != np.uint8:
        raise VitronInputError(f"image file {path} has unsupported sample type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def save_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image; the format follows the file extension."""
    import cv2

    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write image {path}")


def load_depth(path: str | os.PathLike):
    """Read a depth image aligned to its colour image (REP 118) as a DepthImage: a single-channel 16-bit PNG in
    millimetres (16UC1), a 32-bit float TIFF in metres (32FC1), or a .npy of either."""
    import cv2

    from .lifting import DepthImage

    path = Path(path)
    if not path.is_file():
        raise VitronInputError(f"depth file not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            depth = np.load(path, allow_pickle=False)
        except ValueError as error:
            raise VitronInputError(f"cannot read depth file {path}: {error}") from None
    else:
        data = np.fromfile(path, dtype=np.uint8)
        depth = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if depth is None:
            raise VitronInputError(f"cannot decode depth file {path}: not a readable PNG/TIFF image")
    if depth.dtype == np.float64:
        depth = depth.astype(np.float32)
    encodings = {np.dtype(np.uint16): "16UC1", np.dtype(np.float32): "32FC1"}
    if depth.ndim != 2 or depth.dtype not in encodings:
        raise VitronInputError(f"depth file {path} holds {depth.dtype} {depth.shape}: expected one channel of uint16 "
                               "millimetres (16-bit PNG) or float32 metres (TIFF or .npy), REP 118")
    return DepthImage.from_array(depth, encodings[depth.dtype])
