"""ShapesWorld with depth: every shape a flat surface at its own depth in front of a background plane, seen by a
pinhole RGB-D camera, so each object's true 3D centroid and extent are known exactly.

    scene = generate_depth_scene(seed=3)                 # 640x480, ShapesWorld's layout scaled to the camera
    scene.depth_mm                                       # (H, W) uint16 16UC1, as a sensor sends it (noise, holes)
    scene.objects[0].true_centroid                       # metres, optical frame (x right, y down, z forward)

The sensor is modelled on an active stereo camera (RealSense D4xx class), at realistic rates:
- axial noise sigma(z) = noise_at_1m * z^2 (1 % of range at 2 m by default; the D4xx data sheet's "< 2 % at 2 m"),
  plus a smooth error field (calibration error, wavy planes) of 0.4 % of range at 2 m that no method can remove,
- holes: isolated dropouts (`dropout` of the pixels) and blobs (specular or low-texture patches),
- stereo shadows: a band beside every nearer surface (`baseline_m` * f * (1/z_near - 1/z_far) pixels wide) has no
  depth, as the projector and the second imager cannot both see it,
- flying pixels: pixels next to a depth edge take a depth between the two surfaces (`flying` of them),
- 16UC1 millimetre quantisation.
Truth is computed from the exact, noise-free depth of each object's whole surface (occluded parts included) and of
its visible part, both sampled at pixel centres as the sensor samples them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitron_ros.core.lifting import PinholeCamera

from .world import COLOURS, draw_shape, generate_scene, render_background

DEFAULT_CAMERA = PinholeCamera(fx=615.0, fy=615.0, cx=319.5, cy=239.5, width=640, height=480)


@dataclass(frozen=True)
class SensorModel:
    noise_at_1m: float = 0.005  # axial standard deviation at 1 m, metres; grows with z^2
    bias_at_1m: float = 0.002  # a smooth error field (calibration, 'wavy' planes) of this amplitude at 1 m, x z^2
    dropout: float = 0.02  # isolated invalid pixels
    blobs: int = 4  # invalid patches per image (speculars, untextured spots)
    blob_radius_px: tuple[int, int] = (4, 18)
    baseline_m: float = 0.05  # stereo baseline: the width of the shadows beside nearer surfaces
    flying: float = 0.5  # share of depth-edge pixels that read a depth between the two surfaces
    edge_jump_m: float = 0.03  # a depth step larger than this between neighbours is an edge

    @classmethod
    def exact(cls) -> SensorModel:
        return cls(noise_at_1m=0.0, bias_at_1m=0.0, dropout=0.0, blobs=0, baseline_m=0.0, flying=0.0)


@dataclass
class DepthObject:
    name: str  # "red circle"
    mask: np.ndarray  # (H, W) bool, visible pixels
    full_mask: np.ndarray  # (H, W) bool, the whole surface
    true_centroid: np.ndarray  # (3,) mean of the whole surface's points (what a robot reaching for it wants)
    true_size: np.ndarray  # (3,) axis-aligned extent of the whole surface
    visible_centroid: np.ndarray  # (3,) mean of the visible part's points (all a camera can measure)
    visible_share: float  # visible pixels / whole-surface pixels

    @property
    def occluded(self) -> bool:
        return self.visible_share < 0.95

    @property
    def box_xyxy(self) -> tuple[float, float, float, float]:
        ys, xs = np.nonzero(self.mask)
        return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


@dataclass
class DepthScene:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    depth_mm: np.ndarray  # (H, W) uint16, 0 = no depth (16UC1)
    exact_depth_m: np.ndarray  # (H, W) float32, noise-free
    camera: PinholeCamera
    objects: list[DepthObject]  # back to front
    seed: int

    @property
    def depth_m(self) -> np.ndarray:
        """The sensor's depth as 32FC1 metres, holes as NaN (the same measurement as depth_mm)."""
        metres = self.depth_mm.astype(np.float32) / 1000.0
        metres[self.depth_mm == 0] = np.nan
        return metres


def _plane_depth(camera: PinholeCamera, point: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """(H, W) depth z of the plane through `point` with `normal`, along each pixel centre's ray."""
    v, u = np.mgrid[: camera.height, : camera.width].astype(np.float64)
    rays = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)], -1)
    return float(normal @ point) / (rays @ normal)


def _tilted_normal(rng: np.random.Generator, max_tilt_deg: float) -> np.ndarray:
    tilt, azimuth = np.deg2rad(rng.uniform(0, max_tilt_deg)), rng.uniform(0, 2 * np.pi)
    return np.array([np.sin(tilt) * np.cos(azimuth), np.sin(tilt) * np.sin(azimuth), -np.cos(tilt)])


def _points(camera: PinholeCamera, mask: np.ndarray, z: np.ndarray) -> np.ndarray:
    v, u = np.nonzero(mask)
    zs = z[v, u].astype(np.float64)
    return np.stack([(u - camera.cx) / camera.fx * zs, (v - camera.cy) / camera.fy * zs, zs], -1)


def generate_depth_scene(seed: int, camera: PinholeCamera = DEFAULT_CAMERA, sensor: SensorModel = SensorModel(),
                         depth_range_m: tuple[float, float] = (0.6, 2.5), max_tilt_deg: float = 25.0,
                         min_objects: int = 1, max_objects: int = 5) -> DepthScene:
    """One RGB-D scene, fully determined by `seed`: ShapesWorld's layout (shapes, colours, who covers whom) drawn
    in the camera's central square, each shape a tilted plane, nearer the later it is drawn."""
    layout = generate_scene(seed, size=64, min_objects=min_objects, max_objects=max_objects)
    rng = np.random.default_rng([seed, 7])
    h, w = camera.height, camera.width
    side, left = min(h, w), (w - min(h, w)) // 2

    def place(mask_square: np.ndarray) -> np.ndarray:
        full = np.zeros((h, w), bool)
        full[(h - side) // 2 : (h - side) // 2 + side, left : left + side] = mask_square
        return full

    # Background: a plane beyond every object; each object nearer than the ones drawn before it.
    far = depth_range_m[1] + rng.uniform(0.3, 1.0)
    background_z = _plane_depth(camera, np.array([0.0, 0.0, far]), _tilted_normal(rng, 20.0))
    background_z = np.clip(background_z, depth_range_m[1] + 0.1, None)  # a steep tilt never comes forward
    depths = np.sort(rng.uniform(*depth_range_m, size=len(layout.objects)))[::-1]
    image = render_background(layout.background, side, np.random.default_rng([seed, 1]))
    canvas = np.full((h, w, 3), int(image.mean()), np.uint8)
    canvas[(h - side) // 2 : (h - side) // 2 + side, left : left + side] = image
    exact = background_z.astype(np.float64).copy()
    surfaces = []
    for obj, z0 in zip(layout.objects, depths, strict=True):
        full = place(draw_shape(obj.spec, side))
        ys, xs = np.nonzero(full)
        u0, v0 = xs.mean(), ys.mean()
        centre = np.array([(u0 - camera.cx) / camera.fx * z0, (v0 - camera.cy) / camera.fy * z0, z0])
        z = _plane_depth(camera, centre, _tilted_normal(rng, max_tilt_deg))
        exact[full] = z[full]
        canvas[full] = COLOURS[obj.spec.colour]
        surfaces.append((obj, full, z))
    # Visible masks: nothing drawn later covers them.
    objects = []
    for k, (obj, full, z) in enumerate(surfaces):
        covered = np.zeros((h, w), bool)
        for _, later, _ in surfaces[k + 1 :]:
            covered |= later
        visible = full & ~covered
        whole, seen = _points(camera, full, z), _points(camera, visible, z)
        objects.append(DepthObject(
            name=f"{obj.spec.colour} {obj.spec.shape}", mask=visible, full_mask=full,
            true_centroid=whole.mean(0), true_size=whole.max(0) - whole.min(0),
            visible_centroid=seen.mean(0) if len(seen) else whole.mean(0),
            visible_share=float(visible.sum() / max(1, full.sum())),
        ))  # fmt: skip
    measured = _sense(exact, camera, sensor, rng)
    depth_mm = np.clip(np.round(measured * 1000.0), 0, 65535).astype(np.uint16)
    return DepthScene(canvas, depth_mm, exact.astype(np.float32), camera, objects, seed)


def _sense(exact: np.ndarray, camera: PinholeCamera, sensor: SensorModel, rng: np.random.Generator) -> np.ndarray:
    """Exact depth -> what the sensor reports (metres, 0 = no reading)."""
    import cv2

    h, w = exact.shape
    depth = exact.copy()
    # Flying pixels: next to a depth step, a pixel's footprint straddles both surfaces.
    if sensor.flying:
        padded = np.pad(exact, 1, mode="edge")
        neighbours = np.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
        jump = neighbours - exact
        which = np.abs(jump).argmax(0)
        step = np.take_along_axis(jump, which[None], 0)[0]
        edge = (np.abs(step) > sensor.edge_jump_m) & (rng.random((h, w)) < sensor.flying)
        depth[edge] = exact[edge] + rng.random(int(edge.sum())) * step[edge]
    if sensor.bias_at_1m:  # low-frequency: a coarse random grid, smoothly upsampled
        coarse = rng.normal(0.0, 1.0, (4, 5)).astype(np.float32)
        field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        depth += field * sensor.bias_at_1m * depth**2
    if sensor.noise_at_1m:
        depth += rng.normal(0.0, 1.0, (h, w)) * sensor.noise_at_1m * depth**2
    invalid = np.zeros((h, w), bool)
    # Stereo shadows: left of every step to a nearer surface (the projector / second imager sit to its right).
    if sensor.baseline_m:
        for row in range(h):
            z = exact[row]
            steps = np.nonzero(z[1:] < z[:-1] - sensor.edge_jump_m)[0] + 1  # far -> near going right
            for col in steps:
                width = int(round(sensor.baseline_m * camera.fx * (1.0 / z[col] - 1.0 / z[col - 1])))
                invalid[row, max(0, col - width) : col] = True
    if sensor.dropout:
        invalid |= rng.random((h, w)) < sensor.dropout
    for _ in range(sensor.blobs):
        centre = (int(rng.integers(w)), int(rng.integers(h)))
        axes = tuple(int(a) for a in rng.integers(*sensor.blob_radius_px, size=2))
        blob = np.zeros((h, w), np.uint8)
        cv2.ellipse(blob, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        invalid |= blob.astype(bool)
    depth[invalid] = 0.0
    return depth
