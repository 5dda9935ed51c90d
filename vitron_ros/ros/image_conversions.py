"""sensor_msgs/Image and CompressedImage <-> numpy, with cv_bridge's semantics and without cv_bridge.

Works on rclpy messages and rosbags messages alike: reading needs only the fields, writing goes through a
`MessageFactory`. Arrays are HWC (HW for one channel) in the message's own channel order, native byte order.

    array = image_to_numpy(msg)              # passthrough, like cv_bridge.imgmsg_to_cv2(msg)
    rgb = image_to_rgb(msg)                  # (H, W, 3) uint8 RGB, what the pipeline takes
    msg = numpy_to_image(array, "bgr8", factory, header)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from ..core.errors import VitronInputError
from .interfaces import MessageFactory


class ImageConversionError(VitronInputError):
    """A message that cannot be converted: unknown encoding, sizes that do not add up, undecodable bytes."""


@dataclass(frozen=True)
class PixelFormat:
    dtype: np.dtype
    channels: int


_UINT8, _UINT16 = np.dtype(np.uint8), np.dtype(np.uint16)
# sensor_msgs/image_encodings.hpp names. The packed YUV 4:2:2 formats carry two bytes a pixel: "yuv422" is UYVY
# (its documented byte order), "yuv422_yuy2" is YUYV; Jazzy adds the plain names "uyvy" and "yuyv".
ENCODINGS: dict[str, PixelFormat] = {
    "rgb8": PixelFormat(_UINT8, 3),
    "bgr8": PixelFormat(_UINT8, 3),
    "rgba8": PixelFormat(_UINT8, 4),
    "bgra8": PixelFormat(_UINT8, 4),
    "mono8": PixelFormat(_UINT8, 1),
    "mono16": PixelFormat(_UINT16, 1),
    "8UC1": PixelFormat(_UINT8, 1),
    "8UC3": PixelFormat(_UINT8, 3),
    "8UC4": PixelFormat(_UINT8, 4),
    "16UC1": PixelFormat(_UINT16, 1),
    "32FC1": PixelFormat(np.dtype(np.float32), 1),
    "yuv422": PixelFormat(_UINT8, 2),
    "uyvy": PixelFormat(_UINT8, 2),
    "yuv422_yuy2": PixelFormat(_UINT8, 2),
    "yuyv": PixelFormat(_UINT8, 2),
}
_UYVY = ("yuv422", "uyvy")
_YUYV = ("yuv422_yuy2", "yuyv")


def pixel_format(encoding: str) -> PixelFormat:
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODINGS)}"
        ) from None


def image_to_numpy(msg, copy: bool = False) -> np.ndarray:
    """Image message -> (H, W) or (H, W, C) array in the message's encoding, native byte order.

    Without `copy` the array is a read-only view of the message's buffer where the layout allows (no row
    padding, native byte order), as cv_bridge returns it.
    """
    fmt = pixel_format(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(msg.data, dtype=np.uint8)
    row_bytes = width * fmt.channels * fmt.dtype.itemsize
    if height == 0 or width == 0:
        raise ImageConversionError(f"image is empty ({width}x{height})")
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is shorter than a row of {width} {msg.encoding} pixels ({row_bytes} bytes)"
        )
    if data.size != step * height:
        raise ImageConversionError(
            f"image data is {data.size} bytes but step x height = {step} x {height} = {step * height}"
        )
    rows = data.reshape(height, step)[:, :row_bytes]
    if step != row_bytes:  # drop row padding: the view must be contiguous to reinterpret the dtype
        rows = np.ascontiguousarray(rows)
    pixels = rows.view(fmt.dtype.newbyteorder(">" if msg.is_bigendian else "<"))
    if not pixels.dtype.isnative:  # a big-endian camera on a little-endian host, or the reverse
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    shape = (height, width) if fmt.channels == 1 else (height, width, fmt.channels)
    array = pixels.reshape(shape)
    return array.copy() if copy and np.shares_memory(array, data) else array


def image_to_rgb(msg) -> np.ndarray:
    """Image message -> (H, W, 3) uint8 RGB for the pipeline.

    Colour encodings are reordered; mono8 is repeated over three channels; mono16 keeps its high byte; depth-like
    16UC1 / 32FC1 are scaled to their own finite min..max (cv_bridge's display conversion).
    """
    import cv2

    array = image_to_numpy(msg)
    encoding = msg.encoding
    if encoding in ("rgb8", "8UC3"):
        return array
    # OpenCV's SIMD channel shuffles are ~50x faster than numpy's strided copy of array[..., ::-1], and the result
    # is contiguous, which the models need anyway.
    if encoding == "bgr8":
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    if encoding in ("rgba8", "8UC4"):
        return cv2.cvtColor(array, cv2.COLOR_RGBA2RGB)
    if encoding == "bgra8":
        return cv2.cvtColor(array, cv2.COLOR_BGRA2RGB)
    if (encoding in _UYVY or encoding in _YUYV) and array.shape[1] % 2:
        # two pixels share one U and one V sample: an odd width cannot be packed 4:2:2
        raise ImageConversionError(f"{encoding} image is {array.shape[1]} pixels wide; packed YUV 4:2:2 needs an even width")
    if encoding in _UYVY:
        return cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_YUV2RGB_UYVY)
    if encoding in _YUYV:
        return cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_YUV2RGB_YUY2)
    if encoding == "mono16":
        gray = (array >> 8).astype(np.uint8)
    elif encoding in ("16UC1", "32FC1"):
        gray = _scale_to_uint8(array.astype(np.float64))
    else:  # mono8, 8UC1
        gray = array
    return np.repeat(gray[..., None], 3, axis=2)


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.uint8)
    low, high = values[finite].min(), values[finite].max()
    scaled = (values - low) / max(high - low, 1e-12) * 255.0
    return np.where(finite, scaled, 0).round().astype(np.uint8)


def numpy_to_image(array: np.ndarray, encoding: str, factory: MessageFactory, header=None):
    """(H, W) or (H, W, C) array -> Image message with `encoding`; the bytes are copied, rows unpadded."""
    fmt = pixel_format(encoding)
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1 and fmt.channels == 1:
        array = array[..., 0]
    expected_ndim = 2 if fmt.channels == 1 else 3
    if array.ndim != expected_ndim or (expected_ndim == 3 and array.shape[2] != fmt.channels):
        raise ImageConversionError(
            f"encoding {encoding!r} needs {fmt.channels} channel(s), got an array of shape {array.shape}"
        )
    if array.dtype.kind != fmt.dtype.kind or array.dtype.itemsize != fmt.dtype.itemsize:
        raise ImageConversionError(f"encoding {encoding!r} needs dtype {fmt.dtype}, got {array.dtype}")
    height, width = array.shape[:2]
    native = np.ascontiguousarray(array, dtype=fmt.dtype.newbyteorder("="))
    fields = {"height": height, "width": width, "encoding": encoding, "is_bigendian": int(sys.byteorder == "big")}
    fields["step"] = width * fmt.channels * fmt.dtype.itemsize
    fields["data"] = native.reshape(-1).view(np.uint8).copy()
    if header is not None:
        fields["header"] = header
    return factory.new("sensor_msgs/msg/Image", **fields)


def compressed_to_rgb(msg) -> np.ndarray:
    """CompressedImage (jpeg or png) -> (H, W, 3) uint8 RGB."""
    import cv2

    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError(f"compressed image (format {msg.format!r}) has no data")
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if decoded is None:
        raise ImageConversionError(f"cannot decode compressed image of format {msg.format!r} ({data.size} bytes)")
    return decoded[..., ::-1]


def rgb_to_compressed(rgb: np.ndarray, factory: MessageFactory, fmt: str = "jpeg", header=None, quality: int = 90):
    """(H, W, 3) uint8 RGB -> CompressedImage in `fmt` ('jpeg' or 'png')."""
    import cv2

    if fmt not in ("jpeg", "png"):
        raise ImageConversionError(f"compressed format must be 'jpeg' or 'png', got {fmt!r}")
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageConversionError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.dtype} {rgb.shape}")
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    fields = {"format": fmt, "data": encoded.reshape(-1)}
    if header is not None:
        fields["header"] = header
    return factory.new("sensor_msgs/msg/CompressedImage", **fields)
