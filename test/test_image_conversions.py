"""Image <-> numpy on rosbags' real sensor_msgs definitions: round trips, padding, byte order, YUV, errors."""

import sys

import numpy as np
import pytest

from vitron_ros.ros.image_conversions import (
    ENCODINGS,
    ImageConversionError,
    compressed_to_rgb,
    image_to_numpy,
    image_to_rgb,
    numpy_to_image,
    rgb_to_compressed,
)
from vitron_ros.ros.interfaces import TypestoreFactory, header, typestore

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def factory():
    return TypestoreFactory()


def _random_array(encoding, height=5, width=7):
    fmt = ENCODINGS[encoding]
    shape = (height, width) if fmt.channels == 1 else (height, width, fmt.channels)
    if fmt.dtype.kind == "f":
        return RNG.normal(size=shape).astype(fmt.dtype)
    return RNG.integers(0, np.iinfo(fmt.dtype).max + 1, size=shape, dtype=fmt.dtype)


def _cdr_round_trip(msg, typename):
    store = typestore()
    return store.deserialize_cdr(store.serialize_cdr(msg, typename), typename)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_round_trip_through_cdr_for_every_encoding(factory, encoding):
    array = _random_array(encoding)
    msg = numpy_to_image(array, encoding, factory, header(factory, 1_500_000_000, "cam"))
    received = _cdr_round_trip(msg, "sensor_msgs/msg/Image")
    assert (received.encoding, received.height, received.width) == (encoding, 5, 7)
    assert received.header.frame_id == "cam" and received.header.stamp.nanosec == 500_000_000
    assert received.step == 7 * ENCODINGS[encoding].channels * ENCODINGS[encoding].dtype.itemsize
    back = image_to_numpy(received)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_row_padding_in_step_is_dropped(factory):
    rgb = _random_array("rgb8", 4, 3)
    step = 3 * 3 + 7  # 7 bytes of padding a row, as some drivers align rows
    padded = np.zeros((4, step), np.uint8)
    padded[:, :9] = rgb.reshape(4, 9)
    padded[:, 9:] = 0xAB
    msg = factory.new("sensor_msgs/msg/Image", height=4, width=3, encoding="rgb8", step=step, data=padded.ravel())
    np.testing.assert_array_equal(image_to_numpy(msg), rgb)
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1"])
def test_big_endian_data_is_read_in_native_order(factory, encoding):
    values = _random_array(encoding, 3, 4)
    wire = values.astype(values.dtype.newbyteorder(">"))
    msg = factory.new(
        "sensor_msgs/msg/Image", height=3, width=4, encoding=encoding, is_bigendian=1,
        step=4 * values.itemsize, data=np.frombuffer(wire.tobytes(), np.uint8).copy(),
    )  # fmt: skip
    back = image_to_numpy(msg)
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, values)
    written = numpy_to_image(values, encoding, factory)
    assert written.is_bigendian == int(sys.byteorder == "big")


def test_colour_orders_all_reach_the_same_rgb(factory):
    rgb = _random_array("rgb8")
    alpha = np.full(rgb.shape[:2] + (1,), 200, np.uint8)
    variants = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.concatenate([rgb, alpha], axis=2),
        "bgra8": np.concatenate([rgb[..., ::-1], alpha], axis=2),
    }
    for encoding, array in variants.items():
        np.testing.assert_array_equal(image_to_rgb(numpy_to_image(array, encoding, factory)), rgb, err_msg=encoding)


def test_mono_and_depth_encodings_become_grey_rgb(factory):
    mono = _random_array("mono8")
    np.testing.assert_array_equal(image_to_rgb(numpy_to_image(mono, "mono8", factory)), np.dstack([mono] * 3))
    mono16 = np.array([[0, 256, 65535]], np.uint16)
    assert image_to_rgb(numpy_to_image(mono16, "mono16", factory))[0, :, 0].tolist() == [0, 1, 255]
    depth = np.array([[1.0, 2.0, np.nan, 3.0]], np.float32)  # metres; NaN = no return
    assert image_to_rgb(numpy_to_image(depth, "32FC1", factory))[0, :, 0].tolist() == [0, 128, 0, 255]


def _bt601_rgb(y, u, v):
    # OpenCV's YUV2RGB for 4:2:2 uses BT.601 video range.
    c, d, e = y - 16, u - 128, v - 128
    r = 1.164 * c + 1.596 * e
    g = 1.164 * c - 0.392 * d - 0.813 * e
    b = 1.164 * c + 2.017 * d
    return np.clip(np.round([r, g, b]), 0, 255)


@pytest.mark.parametrize("encoding,order", [("yuv422", "UYVY"), ("uyvy", "UYVY"), ("yuv422_yuy2", "YUYV")])
def test_packed_yuv422_byte_orders(factory, encoding, order):
    y0, y1, u, v = 180, 60, 90, 200
    pair = {"UYVY": [u, y0, v, y1], "YUYV": [y0, u, y1, v]}[order]
    data = np.array(pair * 2, np.uint8)  # a 4x1 image: two macro-pixels
    msg = factory.new("sensor_msgs/msg/Image", height=1, width=4, encoding=encoding, step=8, data=data)
    rgb = image_to_rgb(msg).astype(int)
    assert image_to_numpy(msg).shape == (1, 4, 2)
    np.testing.assert_allclose(rgb[0, 0], _bt601_rgb(y0, u, v), atol=2)
    np.testing.assert_allclose(rgb[0, 1], _bt601_rgb(y1, u, v), atol=2)
    assert rgb[0, 0].sum() > rgb[0, 1].sum()  # y0 is the bright pixel: the byte order was read right
    odd = factory.new("sensor_msgs/msg/Image", height=1, width=3, encoding=encoding, step=6, data=data[:6])
    with pytest.raises(ImageConversionError, match="3 pixels wide; packed YUV 4:2:2 needs an even width"):
        image_to_rgb(odd)  # found by the node fuzz: OpenCV's assertion used to escape the decoder


def test_view_by_default_and_copy_on_request(factory):
    msg = numpy_to_image(_random_array("rgb8"), "rgb8", factory)
    assert np.shares_memory(image_to_numpy(msg), msg.data)
    copied = image_to_numpy(msg, copy=True)
    assert not np.shares_memory(copied, msg.data)
    copied[0, 0, 0] ^= 0xFF  # a copy is the caller's to change
    assert copied[0, 0, 0] != image_to_numpy(msg)[0, 0, 0]


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"encoding": "bayer_rggb8"}, "unsupported image encoding 'bayer_rggb8'"),
        ({"data": np.zeros(5 * 21 - 1, np.uint8)}, "image data is 104 bytes but step x height = 21 x 5 = 105"),
        ({"step": 20, "data": np.zeros(100, np.uint8)}, "step 20 is shorter than a row of 7 rgb8 pixels (21 bytes)"),
        ({"height": 0, "data": np.zeros(0, np.uint8)}, "image is empty"),
    ],
)
def test_bad_images_name_what_is_wrong(factory, fields, message):
    good = {"height": 5, "width": 7, "encoding": "rgb8", "step": 21, "data": np.zeros(105, np.uint8)}
    msg = factory.new("sensor_msgs/msg/Image", **{**good, **fields})
    with pytest.raises(ImageConversionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        image_to_rgb(msg)


def test_numpy_to_image_rejects_arrays_that_do_not_fit_the_encoding(factory):
    with pytest.raises(ImageConversionError, match="'rgb8' needs 3 channel"):
        numpy_to_image(np.zeros((4, 4), np.uint8), "rgb8", factory)
    with pytest.raises(ImageConversionError, match="'mono16' needs dtype uint16, got float32"):
        numpy_to_image(np.zeros((4, 4), np.float32), "mono16", factory)
    with pytest.raises(ImageConversionError, match="unsupported image encoding 'rgb16'"):
        numpy_to_image(np.zeros((4, 4, 3), np.uint16), "rgb16", factory)


def test_compressed_png_is_lossless_and_jpeg_close(factory):
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[8:24, 10:30] = (220, 30, 40)
    png = _cdr_round_trip(rgb_to_compressed(rgb, factory, "png"), "sensor_msgs/msg/CompressedImage")
    assert png.format == "png"
    np.testing.assert_array_equal(compressed_to_rgb(png), rgb)
    jpeg = rgb_to_compressed(rgb, factory, "jpeg", header(factory, 7, "cam"), quality=95)
    decoded = compressed_to_rgb(jpeg)
    assert jpeg.header.frame_id == "cam" and decoded.shape == rgb.shape
    assert np.abs(decoded.astype(int) - rgb).mean() < 4  # red stays red: channel order is right
    assert decoded[16, 20, 0] > 180 and decoded[16, 20, 2] < 80


def test_undecodable_compressed_image_is_a_clear_error(factory):
    msg = factory.new("sensor_msgs/msg/CompressedImage", format="jpeg", data=np.arange(50, dtype=np.uint8))
    with pytest.raises(ImageConversionError, match="cannot decode compressed image of format 'jpeg'"):
        compressed_to_rgb(msg)
    with pytest.raises(ImageConversionError, match="has no data"):
        compressed_to_rgb(factory.new("sensor_msgs/msg/CompressedImage", format="png"))
