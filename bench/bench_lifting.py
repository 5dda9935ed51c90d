"""3D lifting cost per mask at camera resolution: a mask + aligned depth -> centroid, boxes, spread.

    python bench/bench_lifting.py [--width 1280 --height 720] [--repeats 200]

A 1280x720 RGB-D frame from the modelled sensor (ShapesWorld with depth: noise, holes, flying pixels), masks of
three sizes. Per mask, the median over --repeats runs of:
- ours, given the mask's box (as the node does: masks carry their box) and without it (one pass over the frame to
  find it);
- yolo_ros's box-centre method on the same mask, for scale;
- the node's whole path for one frame with five masks: the depth matched by stamp, 16UC1 decoded, every mask lifted.
The target is a small fraction of a frame at 30 Hz: <= 2 ms per mask on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up (imports, caches)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000.0


def main() -> None:
    import cv2

    from vitron_lab.shapes.depth_world import generate_depth_scene
    from vitron_ros.core.lifting import DepthImage, PinholeCamera, box_centre_lift, lift_mask

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    cv2.setNumThreads(2)
    w, h = args.width, args.height
    camera = PinholeCamera(fx=0.72 * w, fy=0.72 * w, cx=(w - 1) / 2, cy=(h - 1) / 2, width=w, height=h)
    scene = generate_depth_scene(5, camera=camera, min_objects=5, max_objects=5)
    depth = DepthImage.from_array(scene.depth_mm, "16UC1")
    print(f"{w}x{h} depth (16UC1, modelled sensor), median of {args.repeats} runs, ms per mask")
    print("| mask | pixels | ours, box given | ours, box found | box-centre (yolo_ros) |")
    print("|---|---|---|---|---|")
    sizes = {"small": (60, 60), "medium": (240, 240), "large": (600, 500)}
    for name, (mw, mh) in sizes.items():
        mask = np.zeros((h, w), bool)
        cv2.ellipse(mask.view(np.uint8), (w // 2, h // 2), (mw // 2, mh // 2), 0, 0, 360, 1, -1)
        ys, xs = np.nonzero(mask)
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        given = _median_ms(lambda m=mask, b=box: lift_mask(m, depth, camera, box_xyxy=b), args.repeats)
        found = _median_ms(lambda m=mask: lift_mask(m, depth, camera), args.repeats)
        baseline = _median_ms(lambda m=mask: box_centre_lift(m, depth, camera), args.repeats)
        print(f"| {name} | {int(mask.sum())} | {given:.3f} | {found:.3f} | {baseline:.3f} |")

    # The node's path for one frame: depth message -> match by stamp -> decode -> lift five masks.
    from vitron_ros.ros.depth import CameraDepth, DepthLifter
    from vitron_ros.ros.image_conversions import numpy_to_image
    from vitron_ros.ros.interfaces import TypestoreFactory, header

    factory = TypestoreFactory()
    stamp = 1_700_000_000_000_000_000
    source = CameraDepth("camera/aligned_depth_to_color/image_raw")
    info = factory.new("sensor_msgs/msg/CameraInfo", height=h, width=w, distortion_model="plumb_bob", d=np.zeros(5),
                       k=np.array([camera.fx, 0, camera.cx, 0, camera.fy, camera.cy, 0, 0, 1.0]), r=np.eye(3).ravel(),
                       p=np.zeros(12), header=header(factory, stamp, "cam"))
    source.add_info(info)
    message = numpy_to_image(scene.depth_mm, "16UC1", factory, header(factory, stamp, "cam"))
    lifter = DepthLifter({"cam": source}, wait_s=0.0)
    masks = [(o.mask, o.box_xyxy) for o in scene.objects]
    image_header = header(factory, stamp, "cam")

    def frame():
        source.add_depth(message)
        return lifter.lift("cam", image_header, masks, factory)

    whole = _median_ms(frame, max(20, args.repeats // 4))
    pixels = sum(int(m.sum()) for m, _ in masks)
    print(f"\nnode path, one frame: depth decoded + matched + {len(masks)} masks ({pixels} px) lifted: {whole:.2f} ms "
          f"({whole / len(masks):.2f} ms per mask; a 30 Hz frame is 33.3 ms)")


if __name__ == "__main__":
    main()
