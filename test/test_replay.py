"""`vitron replay` over bags and videos the tests write: the output bag decodes and matches `vitron query`."""

import json
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from vitron_ros.cli import main
from vitron_ros.core.image_io import save_image
from vitron_ros.core.masks import rle_encode
from vitron_ros.ros.image_conversions import image_to_numpy, numpy_to_image
from vitron_ros.ros.interfaces import TypestoreFactory, header, stamp_ns, typestore
from vitron_ros.ros.replay import write_image_bag

REQUEST = "what is in this picture?"


def _frames(scene):
    shifted = np.roll(scene, 25, axis=1)
    return [scene, shifted, scene[:, ::-1].copy()]


def _read_bag(path: Path) -> dict[str, list]:
    # Only the standard ROS 2 types here: vitron_ros_msgs and vision_msgs must decode from the bag's own definitions.
    messages = {}
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        for connection, timestamp, raw in reader.messages():
            msg = reader.deserialize(raw, connection.msgtype)
            messages.setdefault(connection.topic, []).append((timestamp, msg))
    return messages


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_replay_output_decodes_and_matches_the_cli_for_the_same_frame(tiny_profile, scene, tmp_path, capsys, storage):
    bag, out = tmp_path / "input_bag", tmp_path / "output_bag"
    frames = _frames(scene)
    write_image_bag(bag, frames, topic="/front/image_raw", frame_id="front_optical", storage=storage, encoding="bgr8")
    code = main(["replay", str(bag), "--query", REQUEST, "--out", str(out), "--profile", "tiny", "--storage", storage])
    assert code == 0, capsys.readouterr().err
    assert "answered 3 frame(s) of /front/image_raw" in capsys.readouterr().out

    messages = _read_bag(out)
    assert set(messages) == {"/front/image_raw"} | {f"/vitron/{t}" for t in ("answer", "masks", "detections", "overlay")}
    assert all(len(items) == 3 for items in messages.values())
    images = messages["/front/image_raw"]
    for topic in ("/vitron/answer", "/vitron/masks", "/vitron/detections", "/vitron/overlay"):
        for (t_img, img), (t_out, msg) in zip(images, messages[topic], strict=True):
            assert t_out == t_img and stamp_ns(msg.header) == stamp_ns(img.header) and msg.header.frame_id == "front_optical"

    # The CLI on frame 1 written as a PNG answers exactly what the bag recorded for frame 1.
    png = tmp_path / "frame1.png"
    save_image(png, frames[1])
    assert main(["query", str(png), REQUEST, "--profile", "tiny", "--out", str(tmp_path / "q"), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    _, answer = messages["/vitron/answer"][1]
    assert answer.error == "" and answer.request == REQUEST and answer.request_id == "frame-1"
    assert answer.text == expected["answer"] and answer.raw_reply == expected["raw_reply"]
    assert list(answer.warnings) == expected["errors"]
    assert [rle_encode(image_to_numpy(m.mask) > 0) for m in answer.masks] == [m["rle"] for m in expected["masks"]]
    _, masks = messages["/vitron/masks"][1]
    assert [m.label for m in masks.masks] == [m["label"] for m in expected["masks"]]
    _, overlay = messages["/vitron/overlay"][1]
    assert image_to_numpy(overlay).shape == frames[1].shape


def test_replay_with_a_depth_topic_matches_depth_by_stamp_and_writes_3d(tiny_profile, scene, tmp_path, capsys):
    """Depth recorded 3 ms after each image (a wall at 2 m), its camera_info beside it; the third image's depth is
    missing, so that frame has no 3D, and says why."""
    bag, out = tmp_path / "rgbd_bag", tmp_path / "rgbd_out"
    store, factory = typestore(), TypestoreFactory()
    height, width = scene.shape[:2]
    info = factory.new("sensor_msgs/msg/CameraInfo", height=height, width=width, distortion_model="plumb_bob",
                       d=np.zeros(5), k=np.array([200.0, 0, width / 2, 0, 200.0, height / 2, 0, 0, 1]),
                       r=np.eye(3).ravel(), p=np.zeros(12), header=header(factory, 0, "cam_optical"))
    topics = {"image": "/cam/color/image_raw", "depth": "/cam/aligned_depth_to_color/image_raw",
              "info": "/cam/aligned_depth_to_color/camera_info"}
    with Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        kinds = {"image": "sensor_msgs/msg/Image", "depth": "sensor_msgs/msg/Image", "info": "sensor_msgs/msg/CameraInfo"}
        connections = {k: writer.add_connection(topics[k], kinds[k], typestore=store) for k in topics}
        for i, rgb in enumerate(_frames(scene)):
            stamp = (i + 1) * 100_000_000
            image = numpy_to_image(rgb, "rgb8", factory, header(factory, stamp, "cam_optical"))
            writer.write(connections["image"], stamp, store.serialize_cdr(image, kinds["image"]))
            if i < 2:
                depth = numpy_to_image(np.full((height, width), 2000, np.uint16), "16UC1", factory,
                                       header(factory, stamp, "cam_optical"))
                writer.write(connections["depth"], stamp + 3_000_000, store.serialize_cdr(depth, kinds["depth"]))
            writer.write(connections["info"], stamp + 3_000_000, store.serialize_cdr(info, kinds["info"]))
    code = main(["replay", str(bag), "--topic", topics["image"], "--depth-topic", topics["depth"], "--query", REQUEST,
                 "--track-box", "10,10,60,60", "--out", str(out), "--profile", "tiny"])
    assert code == 0, capsys.readouterr().err
    messages = _read_bag(out)
    assert len(messages[topics["depth"]]) == 2 and len(messages["/vitron/answer"]) == 3
    image_stamps = [stamp_ns(m.header) for _, m in messages[topics["image"]]]
    assert [stamp_ns(m.header) for _, m in messages["/vitron/detections_3d"]] == image_stamps[:2]
    assert [stamp_ns(m.header) for _, m in messages["/vitron/tracks_3d"]] == image_stamps[:2]
    tracked = [[o for o in m.objects if o.state == 0] for _, m in messages["/vitron/tracks"]]
    assert all(tracked), "the tiny tracker follows the box in every frame"
    for objects in tracked[:2]:  # matched depth: the wall at 2 m
        assert all(o.object_3d.valid and abs(o.object_3d.centroid.z - 2.0) < 1e-3 for o in objects)
    assert all(not o.object_3d.valid and "within 20 ms" in o.object_3d.reason for o in tracked[2])
    _, tracks_3d = messages["/vitron/tracks_3d"][0]
    assert [d.id for d in tracks_3d.detections] == [o.object_id for o in tracked[0]]
    assert tracks_3d.detections[0].bbox.center.position.z == pytest.approx(2.0, abs=1e-3)
    _, markers = messages["/vitron/tracks_markers"][0]
    assert markers.markers[0].action == 3 and {m.type for m in markers.markers[1:]} == {1, 9}
    _, last = messages["/vitron/answer"][2]
    assert any("no 3D: no depth on /cam/aligned_depth_to_color/image_raw within 20 ms" in w for w in last.warnings)


def test_replay_of_a_video_file(tiny_profile, scene, tmp_path, capsys):
    import cv2

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (scene.shape[1], scene.shape[0]))
    for frame in _frames(scene) * 2:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    out = tmp_path / "video_out"
    args = ["replay", str(video), "--query", REQUEST, "--out", str(out), "--profile", "tiny", "--every", "2", "--max-frames", "2",
            "--no-overlay"]
    assert main(args) == 0, capsys.readouterr().err
    messages = _read_bag(out)
    assert len(messages["/vitron/answer"]) == 2 and "/vitron/overlay" not in messages
    stamps = [stamp_ns(m.header) for _, m in messages["/vitron/answer"]]
    assert stamps == [0, 200_000_000]  # frames 0 and 2 of 6 at 10 fps, then --max-frames stops it


def test_a_broken_frame_is_reported_and_the_replay_goes_on(tiny_profile, scene, tmp_path, capsys):
    bag = tmp_path / "bag_with_bad_frame"
    store, factory = typestore(), TypestoreFactory()
    with Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/camera/image", "sensor_msgs/msg/Image", typestore=store)
        for i in range(3):
            msg = numpy_to_image(scene, "rgb8", factory, header(factory, i + 1, "camera"))
            if i == 1:
                msg.encoding = "bayer_grbg8"
            writer.write(connection, i + 1, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    out = tmp_path / "out"
    assert main(["replay", str(bag), "--query", REQUEST, "--out", str(out), "--profile", "tiny"]) == 0
    printed = capsys.readouterr().out
    assert "answered 2 frame(s)" in printed and "frame 1: camera replay" not in printed
    assert "frame 1: replay: unsupported image encoding 'bayer_grbg8'" in printed
    assert len(_read_bag(out)["/vitron/answer"]) == 2


def test_replay_input_errors_are_one_line(tiny_profile, scene, tmp_path, capsys):
    two_topics = tmp_path / "two"
    store, factory = typestore(), TypestoreFactory()
    with Writer(two_topics, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic in ("/a/image", "/b/image"):
            connection = writer.add_connection(topic, "sensor_msgs/msg/Image", typestore=store)
            msg = numpy_to_image(scene, "rgb8", factory, header(factory, 1, "camera"))
            writer.write(connection, 1, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    not_a_video = tmp_path / "noise.mp4"
    not_a_video.write_bytes(b"\x00" * 100)
    existing = tmp_path / "exists"
    existing.mkdir()
    cases = [
        ([str(two_topics)], "has 2 image topics (/a/image, /b/image); choose one with --topic"),
        ([str(two_topics), "--topic", "/c/image"], "has no image topic '/c/image'"),
        ([str(tmp_path / "missing")], "does not exist"),
        ([str(not_a_video)], "cannot open video"),
        ([str(two_topics), "--topic", "/a/image", "--every", "0"], "--every must be >= 1"),
        ([str(two_topics), "--out-exists"], "already exists"),
    ]
    for i, (args, message) in enumerate(cases):
        out = existing if "--out-exists" in args else tmp_path / f"out{i}"
        args = [a for a in args if a != "--out-exists"]
        code = main(["replay", *args, "--query", REQUEST, "--out", str(out), "--profile", "tiny"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("vitron: error:") and message in err, (args, err)
