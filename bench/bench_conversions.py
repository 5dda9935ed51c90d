"""Image conversion throughput against a plain copy of the same bytes, measured in the same run.

    .venv/bin/python bench/bench_conversions.py [--runs 50]

Directions: msg -> numpy (the view the node stores for rgb8, a copy on request, and image_to_rgb for bgr8, which
must reorder channels) and numpy -> msg (numpy_to_image copies the pixels into the message, as cv_bridge does).
Ratio = plain-copy time / conversion time: >= 1 means as fast as memcpy of the frame; the target is >= 0.5.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vitron_ros.ros.image_conversions import image_to_numpy, image_to_rgb, numpy_to_image
from vitron_ros.ros.interfaces import TypestoreFactory

SIZES = {"640x480": (480, 640), "1920x1080": (1080, 1920)}


def median_seconds(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    factory = TypestoreFactory()
    rng = np.random.default_rng(0)
    print(f"{'size':>10} {'direction':<34} {'median ms':>10} {'copy ms':>8} {'ratio':>7}")
    for label, (height, width) in SIZES.items():
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        msg = numpy_to_image(rgb, "rgb8", factory)
        bgr_msg = numpy_to_image(rgb[..., ::-1], "bgr8", factory)
        flat = msg.data
        copy_s = median_seconds(lambda: flat.copy(), args.runs)  # the same bytes, one memcpy
        cases = {
            "msg->numpy rgb8 (view)": lambda: image_to_numpy(msg),
            "msg->numpy rgb8 (copy=True)": lambda: image_to_numpy(msg, copy=True),
            "msg->rgb bgr8 (contiguous RGB)": lambda: np.ascontiguousarray(image_to_rgb(bgr_msg)),
            "numpy->msg rgb8": lambda: numpy_to_image(rgb, "rgb8", factory),
        }
        for name, fn in cases.items():
            seconds = median_seconds(fn, args.runs)
            print(f"{label:>10} {name:<34} {seconds * 1e3:>10.3f} {copy_s * 1e3:>8.3f} {copy_s / seconds:>7.2f}")


if __name__ == "__main__":
    main()
