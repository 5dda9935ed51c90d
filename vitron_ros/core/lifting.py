"""Masks lifted to 3D with an aligned depth image and pinhole intrinsics.

    depth = DepthImage.from_array(raw, "16UC1")        # REP 118: 16UC1 millimetres or 32FC1 metres
    camera = PinholeCamera(fx=615, fy=615, cx=320, cy=240, width=640, height=480)
    found = lift_mask(mask, depth, camera)            # Object3D, or No3D with the reason

Frame: the camera's optical frame (REP 103 `_optical`: x right, y down, z forward), metres; `transform_object`
moves a result to another frame. Depth must be aligned to the image the mask was computed on
(pixel (u, v) of the mask is pixel (u, v) of the depth), as `aligned_depth_to_color` topics are.

Robust by construction (a mask from a segmenter bleeds onto the background; depth has holes and flying pixels):
1. crop to the mask's box and erode it by `erode_px` (edge pixels are where flying pixels and bleeding live);
2. keep valid depths only (0, NaN and inf are holes);
3. median depth, reject beyond max(k * 1.4826 * MAD, floor) of it (a background patch inside the mask goes);
4. back-project the inliers; centroid = their mean, covariance = their spread, extents from them.
Fewer than `min_pixels` valid or inlier pixels gives `No3D` with the reason, never a made-up position.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .errors import VitronInputError

# REP 118 depth encodings -> metres per unit; "mono16" is how some drivers label 16UC1 millimetre depth.
DEPTH_SCALES = {"16UC1": 0.001, "mono16": 0.001, "32FC1": 1.0}
DISTORTION_MODELS = ("", "none", "plumb_bob", "rational_polynomial", "equidistant")
# coefficient counts OpenCV accepts for each model (CameraInfo's D)
DISTORTION_COUNTS = {"plumb_bob": (4, 5, 8, 12, 14), "rational_polynomial": (8, 12, 14), "equidistant": (4,)}
MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
STATISTICS_SAMPLE = 4096  # medians, percentiles and the spread are taken over about this many inliers


@dataclass(frozen=True)
class LiftingConfig:
    erode_px: int = 2  # mask erosion before reading depth: flying pixels and mask bleed sit on the edges
    mad_k: float = 3.0  # inliers lie within mad_k robust standard deviations of the median depth ...
    mad_floor_m: float = 0.01  # ... or within this, whichever is wider (a flat surface has MAD ~ noise)
    min_pixels: int = 20  # fewer valid (or inlier) depth pixels than this: no 3D
    max_points: int = 12000  # larger masks are read on a regular pixel grid (bounded cost per mask)
    min_depth_m: float = 0.05  # depths outside [min, max] are holes (sensor's blind zone, far garbage)
    max_depth_m: float = 30.0

    def __post_init__(self):
        checks = [
            (self.erode_px >= 0, "erode_px", ">= 0"),
            (self.mad_k > 0, "mad_k", "> 0"),
            (self.mad_floor_m >= 0, "mad_floor_m", ">= 0"),
            (self.min_pixels >= 3, "min_pixels", ">= 3 (a covariance needs points)"),
            (self.max_points >= self.min_pixels, "max_points", ">= min_pixels"),
            (0 <= self.min_depth_m < self.max_depth_m, "min_depth_m", "0 <= min_depth_m < max_depth_m"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise VitronInputError(f"lifting {name}={getattr(self, name)!r}: expected {expected}")


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics of the (depth-aligned) image: pixels, principal point at pixel centres (OpenCV / CameraInfo K)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int = 0  # 0: unknown (not checked against the depth image)
    height: int = 0
    distortion_model: str = ""  # CameraInfo's: plumb_bob, rational_polynomial, equidistant; "" = none
    distortion: tuple[float, ...] = ()

    def __post_init__(self):
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(np.isfinite(v) for v in values) or self.fx <= 0 or self.fy <= 0:
            raise VitronInputError(f"intrinsics fx={self.fx}, fy={self.fy}, cx={self.cx}, cy={self.cy}: "
                                   "expected finite values with fx, fy > 0 (an uncalibrated camera_info has zeros)")
        if self.width < 0 or self.height < 0:
            raise VitronInputError(f"intrinsics size {self.width}x{self.height}: expected >= 0")
        if self.distortion_model not in DISTORTION_MODELS:
            raise VitronInputError(f"distortion model {self.distortion_model!r} is not supported; "
                                   f"expected one of {DISTORTION_MODELS[2:]} (or none)")
        if not all(np.isfinite(d) for d in self.distortion):
            raise VitronInputError(f"distortion coefficients {self.distortion} are not all finite")
        counts = DISTORTION_COUNTS.get(self.distortion_model)
        if self.distorted and counts is not None and len(self.distortion) not in counts:
            raise VitronInputError(f"{self.distortion_model} distortion has {len(self.distortion)} coefficients; "
                                   f"expected {' or '.join(map(str, counts))}")

    @classmethod
    def parse(cls, text: str) -> PinholeCamera:
        """'fx,fy,cx,cy' (the CLI's --intrinsics) -> camera."""
        parts = [p.strip() for p in text.split(",")]
        try:
            fx, fy, cx, cy = (float(p) for p in parts)
        except ValueError:
            raise VitronInputError(f"intrinsics {text!r}: expected four numbers fx,fy,cx,cy (pixels)") from None
        return cls(fx, fy, cx, cy)

    @classmethod
    def from_k(cls, k, width: int = 0, height: int = 0, distortion_model: str = "", distortion=()) -> PinholeCamera:
        """From CameraInfo's row-major 3x3 K."""
        k = [float(v) for v in k]
        if len(k) != 9:
            raise VitronInputError(f"camera matrix K has {len(k)} values; expected 9 (row-major 3x3)")
        return cls(k[0], k[4], k[2], k[5], int(width), int(height), distortion_model, tuple(float(d) for d in distortion))

    @property
    def distorted(self) -> bool:
        return self.distortion_model not in ("", "none") and any(d != 0.0 for d in self.distortion)

    def rays(self, us: np.ndarray, vs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates -> normalised image coordinates (x/z, y/z), undistorted where the model says so."""
        if not self.distorted:
            return (us - self.cx) / self.fx, (vs - self.cy) / self.fy
        import cv2

        k = np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], np.float64)
        points = np.stack([us, vs], -1).astype(np.float64).reshape(-1, 1, 2)
        d = np.asarray(self.distortion, np.float64)
        if self.distortion_model == "equidistant":
            normalised = cv2.fisheye.undistortPoints(points, k, d[:4])
        else:
            normalised = cv2.undistortPoints(points, k, d)
        return normalised[:, 0, 0], normalised[:, 0, 1]

    def project(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) points in the optical frame -> (N, 2) pixels (no distortion), for checks and synthetic scenes."""
        points = np.asarray(points, np.float64)
        return np.stack([points[:, 0] / points[:, 2] * self.fx + self.cx,
                         points[:, 1] / points[:, 2] * self.fy + self.cy], -1)


@dataclass(frozen=True)
class DepthImage:
    """A depth image as the sensor sent it (converted to metres per crop, lazily: a full 720p frame costs more
    than a mask's lift). `scale`: metres per unit; 0 and non-finite values are holes."""

    data: np.ndarray  # (H, W) uint16 (16UC1, mm) or float32 (32FC1, m)
    encoding: str
    scale: float

    @classmethod
    def from_array(cls, data: np.ndarray, encoding: str) -> DepthImage:
        if encoding not in DEPTH_SCALES:
            raise VitronInputError(f"depth encoding {encoding!r} is not a REP 118 depth image; "
                                   f"expected 16UC1 (millimetres) or 32FC1 (metres)")
        data = np.asarray(data)
        expected = np.float32 if encoding == "32FC1" else np.uint16
        if data.ndim != 2 or data.dtype != expected:
            raise VitronInputError(f"depth ({encoding}) must be a (H, W) {np.dtype(expected).name} array, "
                                   f"got {data.shape} {data.dtype}")
        return cls(data, encoding, DEPTH_SCALES[encoding])

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape

    def metres(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """float32 metres of a crop, holes as NaN."""
        crop = self.data[rows, cols].astype(np.float32) * np.float32(self.scale)
        crop[~(crop > 0)] = np.nan  # zeros, negatives and NaN are holes (inf is removed by the range check)
        return crop


@dataclass(frozen=True)
class RigidTransform:
    """p_target = rotation @ p_source + translation (e.g. from a TF lookup at the image's stamp)."""

    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)
    frame_id: str = ""  # the target frame

    @classmethod
    def from_quaternion(cls, xyzw, translation, frame_id: str = "") -> RigidTransform:
        return cls(quaternion_to_matrix(xyzw), np.asarray(translation, np.float64), frame_id)

    def apply(self, points: np.ndarray) -> np.ndarray:
        return points @ self.rotation.T + self.translation


@dataclass(frozen=True)
class Object3D:
    """A mask's 3D estimate. Points: (3,) metres; covariance: (3, 3) m^2, the spread of the inlier points."""

    centroid: np.ndarray  # mean of the inlier points
    box_center: np.ndarray  # axis-aligned box: centre and size (x, y, z)
    box_size: np.ndarray
    oriented_center: np.ndarray  # oriented box (principal axes of the inliers): centre, size, rotation
    oriented_size: np.ndarray
    oriented_rotation: np.ndarray  # (3, 3), columns = the box's axes in the frame; det = +1
    covariance: np.ndarray
    inliers: int  # depth pixels that agree on the surface (of a large mask read on a grid: estimated)
    valid_pixels: int  # depth pixels inside the eroded mask that were not holes (likewise)
    mask_pixels: int  # pixels of the mask as given
    occluded_share: float = 0.0  # share of the outline bordered by a nearer surface: > ~0.1, partly hidden
    frame_id: str = ""  # "" = the camera's optical frame (the image header's frame)

    ok = True
    reason = ""

    @property
    def distance(self) -> float:
        return float(np.linalg.norm(self.centroid))

    @property
    def oriented_quaternion(self) -> tuple[float, float, float, float]:
        """(x, y, z, w) of `oriented_rotation`."""
        return matrix_to_quaternion(self.oriented_rotation)

    def to_json(self) -> dict:
        def r(v):
            return [round(float(x), 4) for x in np.ravel(v)]

        return {"centroid_m": r(self.centroid), "box_center_m": r(self.box_center), "box_size_m": r(self.box_size),
                "oriented_center_m": r(self.oriented_center), "oriented_size_m": r(self.oriented_size),
                "oriented_quaternion_xyzw": r(self.oriented_quaternion), "covariance_m2": r(self.covariance),
                "inliers": self.inliers, "valid_pixels": self.valid_pixels, "mask_pixels": self.mask_pixels,
                "occluded_share": round(self.occluded_share, 3), "frame_id": self.frame_id}  # fmt: skip


@dataclass(frozen=True)
class No3D:
    """No 3D for this mask, and why (too few valid depth pixels, no depth at all, sizes that do not match)."""

    reason: str
    valid_pixels: int = 0
    mask_pixels: int = 0

    ok = False

    def to_json(self) -> dict:
        return {"reason": self.reason, "valid_pixels": self.valid_pixels, "mask_pixels": self.mask_pixels}


Lifted = Object3D | No3D


@dataclass
class _Crop:
    rows: slice
    cols: slice
    mask: np.ndarray = field(repr=False)


def _crop(mask: np.ndarray, box_xyxy=None) -> _Crop | None:
    """The mask cut to its tight box (from `box_xyxy` when the caller knows it: no pass over the full frame)."""
    import cv2

    if box_xyxy is not None:
        h, w = mask.shape
        x1, y1 = max(0, int(np.floor(box_xyxy[0]))), max(0, int(np.floor(box_xyxy[1])))
        x2, y2 = min(w, int(np.ceil(box_xyxy[2]))), min(h, int(np.ceil(box_xyxy[3])))
    else:
        x, y, bw, bh = cv2.boundingRect(mask.view(np.uint8))
        x1, y1, x2, y2 = x, y, x + bw, y + bh
    if x2 <= x1 or y2 <= y1:
        return None
    return _Crop(slice(y1, y2), slice(x1, x2), mask[y1:y2, x1:x2])


def lift_mask(mask: np.ndarray, depth: DepthImage, camera: PinholeCamera, config: LiftingConfig = LiftingConfig(),
              box_xyxy=None) -> Lifted:
    """A (H, W) bool mask + the aligned depth -> Object3D, or No3D with the reason.

    `box_xyxy`: the mask's tight box in pixels, if known (saves a pass over the frame). In the camera's optical
    frame; `transform_object` moves the result to another.
    """
    import cv2

    if mask.ndim != 2 or mask.dtype != bool:
        raise VitronInputError(f"mask must be a (H, W) bool array, got {mask.shape} {mask.dtype}")
    if mask.shape != depth.shape:
        return No3D(f"depth {depth.shape[1]}x{depth.shape[0]} is not aligned to the {mask.shape[1]}x{mask.shape[0]} "
                    "image (use the depth registered to the colour camera, e.g. aligned_depth_to_color)")
    if camera.width and (camera.width, camera.height) != (mask.shape[1], mask.shape[0]):
        return No3D(f"camera_info is for {camera.width}x{camera.height} images, the image is "
                    f"{mask.shape[1]}x{mask.shape[0]}")
    crop = _crop(mask, box_xyxy)
    mask_pixels = int(np.count_nonzero(crop.mask)) if crop is not None else 0
    if mask_pixels == 0:
        return No3D("the mask is empty")
    # 1. erode: the edges carry flying pixels and the segmenter's bleed onto what lies behind
    region = crop.mask
    if config.erode_px:
        kernel = np.ones((2 * config.erode_px + 1,) * 2, np.uint8)
        eroded = cv2.erode(crop.mask.view(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        if np.count_nonzero(eroded) >= config.min_pixels:  # a thin object keeps its whole mask
            region = eroded.view(bool)
    # 2. valid depth only; a large mask is read on a regular pixel grid (every `step`-th row and column)
    step = max(1, int(np.ceil(np.sqrt(np.count_nonzero(region) / config.max_points))))
    offset = (step - 1) // 2  # the grid centred in the crop: what it misses is shared by opposite edges
    r0, c0 = crop.rows.start + offset, crop.cols.start + offset
    metres = depth.metres(slice(r0, crop.rows.stop, step), slice(c0, crop.cols.stop, step))
    vs, us = np.nonzero(region[offset::step, offset::step])
    z = metres[vs, us]
    valid = (z >= config.min_depth_m) & (z <= config.max_depth_m)  # NaN compares false: holes drop out
    valid_pixels = int(np.count_nonzero(valid)) * step * step
    if valid_pixels < config.min_pixels:
        return No3D(f"{valid_pixels} valid depth pixels in the mask (need {config.min_pixels}): holes or out of "
                    f"range [{config.min_depth_m}, {config.max_depth_m}] m", valid_pixels, mask_pixels)
    vs, us, z = vs[valid], us[valid], z[valid]
    # 3. median and MAD (of a few thousand of them: they only place the window): background inside the mask and
    # flying pixels left after erosion are rejected
    sample = z[:: max(1, len(z) // STATISTICS_SAMPLE)]
    median = _middle(sample)
    tolerance = max(config.mad_k * MAD_TO_SIGMA * _middle(np.abs(sample - np.float32(median))), config.mad_floor_m)
    keep = np.abs(z - median) <= tolerance
    inliers = int(np.count_nonzero(keep))
    if inliers * step * step < config.min_pixels:
        return No3D(f"{inliers * step * step} depth pixels agree on a surface (need {config.min_pixels})",
                    valid_pixels, mask_pixels)
    occluded = _occluded_share(mask, depth, crop, median, tolerance)
    # 4. back-project the inliers (pixel centres; the crop's offset and the grid restored)
    zk = z[keep]
    u = (us[keep] * step + c0).astype(np.float32)
    v = (vs[keep] * step + r0).astype(np.float32)
    if camera.distorted:
        xn, yn = (a.astype(np.float32) for a in camera.rays(u, v))
    else:
        xn, yn = (u - np.float32(camera.cx)) / np.float32(camera.fx), (v - np.float32(camera.cy)) / np.float32(camera.fy)
    # Erosion moved every edge in by `erode_px` pixels and the grid may miss up to step - 1 more: give that back.
    margin_px = (config.erode_px if region is not crop.mask else 0) + (step - 1) / 2
    return _describe((xn * zk, yn * zk, zk), valid_pixels, mask_pixels, margin_px, camera, median, occluded,
                     step * step)


def _middle(values: np.ndarray) -> float:
    """The median (upper one for an even count): one partition, without np.median's overhead on small arrays."""
    k = len(values) // 2
    return float(np.partition(values, k)[k])


def _occluded_share(mask: np.ndarray, depth: DepthImage, crop: _Crop, median: float, tolerance: float) -> float:
    """Share of the mask's outline (a 2 px ring outside it, where depth is valid) lying in front of the object:
    where a nearer surface borders the mask, the object goes on behind it and its centroid is the visible part's."""
    import cv2

    h, w = mask.shape
    pad = 2
    rows = slice(max(0, crop.rows.start - pad), min(h, crop.rows.stop + pad))
    cols = slice(max(0, crop.cols.start - pad), min(w, crop.cols.stop + pad))
    local = mask[rows, cols].view(np.uint8)
    ring = cv2.dilate(local, np.ones((2 * pad + 1,) * 2, np.uint8)).view(bool) & ~mask[rows, cols]
    z = depth.data[rows, cols][ring].astype(np.float32) * np.float32(depth.scale)  # the ring's pixels only
    z = z[z > 0]  # holes (0, NaN) drop out
    # the step must clear the flying pixels that sit on every edge: twice the inlier tolerance, at least 3 cm
    return float(np.mean(z < median - max(2 * tolerance, 0.03))) if len(z) else 0.0


def _describe(points: tuple[np.ndarray, np.ndarray, np.ndarray], valid: int, mask_pixels: int, margin_px: float,
              camera: PinholeCamera, median_z: float, occluded: float, pixels_per_point: int = 1) -> Object3D:
    """The estimate from the inliers' coordinates (three contiguous 1-D arrays: fast reductions)."""
    x, y, z = points
    centroid = np.array([x.mean(dtype=np.float64), y.mean(dtype=np.float64), z.mean(dtype=np.float64)])
    stride = max(1, len(z) // STATISTICS_SAMPLE)  # spread and percentiles from a regular sample
    sample = np.stack([x[::stride], y[::stride], z[::stride]]).astype(np.float64)
    centred = sample - sample.mean(1, keepdims=True)
    covariance = centred @ centred.T / max(1, sample.shape[1] - 1)
    # across the view: the extreme inliers; along it the spread is the sensor's noise more than the object's, so
    # robust percentiles (2nd and 98th)
    n = sample.shape[1]
    k_low, k_high = int(0.02 * (n - 1)), int(np.ceil(0.98 * (n - 1)))
    z_low, z_high = np.partition(sample[2], (k_low, k_high))[[k_low, k_high]]
    low = np.array([x.min(), y.min(), z_low], np.float64)
    high = np.array([x.max(), y.max(), z_high], np.float64)
    margin = margin_px * median_z / np.array([camera.fx, camera.fy, np.inf])
    margin[2] = 0.0
    low, high = low - margin, high + margin
    # Oriented box: the inliers' principal axes, right-handed.
    _, axes = np.linalg.eigh(covariance)
    axes = axes[:, ::-1].copy()
    if np.linalg.det(axes) < 0:
        axes[:, 2] *= -1
    dx, dy, dz = (x - np.float32(centroid[0]), y - np.float32(centroid[1]), z - np.float32(centroid[2]))
    o_low, o_high = np.empty(3), np.empty(3)
    for k in range(3):
        projected = dx * np.float32(axes[0, k]) + dy * np.float32(axes[1, k]) + dz * np.float32(axes[2, k])
        o_low[k], o_high[k] = projected.min(), projected.max()
    o_margin = np.abs(axes[:2]).T @ margin[:2]  # each axis gets the margin along its image-plane direction
    o_low, o_high = o_low - o_margin, o_high + o_margin
    return Object3D(
        centroid=centroid,
        box_center=(low + high) / 2,
        box_size=high - low,
        oriented_center=centroid + axes @ ((o_low + o_high) / 2),
        oriented_size=o_high - o_low,
        oriented_rotation=axes,
        covariance=covariance,
        inliers=len(z) * pixels_per_point,
        valid_pixels=valid,
        mask_pixels=mask_pixels,
        occluded_share=occluded,
    )


def transform_object(found: Object3D, transform: RigidTransform) -> Object3D:
    """`found` expressed in `transform`'s target frame. Centroid, spread and the oriented box move exactly; the
    axis-aligned box becomes the tighter of the two boxes that bound the moved axis-aligned and oriented boxes."""
    r, t = transform.rotation, transform.translation
    signs = np.array([[i, j, k] for i in (-0.5, 0.5) for j in (-0.5, 0.5) for k in (-0.5, 0.5)])
    aligned = transform.apply(found.box_center + signs * found.box_size)
    oriented = transform.apply(found.oriented_center + (signs * found.oriented_size) @ found.oriented_rotation.T)
    low = np.maximum(aligned.min(0), oriented.min(0))
    high = np.minimum(aligned.max(0), oriented.max(0))
    return dataclasses.replace(
        found,
        centroid=r @ found.centroid + t,
        box_center=(low + high) / 2,
        box_size=high - low,
        oriented_center=r @ found.oriented_center + t,
        oriented_rotation=r @ found.oriented_rotation,
        covariance=r @ found.covariance @ r.T,
        frame_id=transform.frame_id,
    )


def box_centre_lift(mask: np.ndarray, depth: DepthImage, camera: PinholeCamera, threshold_m: float = 0.3) -> Lifted:
    """The method yolo_ros's detect_3d uses, for side-by-side evaluation (not used by the node):
    median depth of the mask, depths within `threshold_m` of it kept, z = the middle of their range,
    x and y from the 2D box centre, size from the 2D box at that depth and the kept depths' range."""
    crop = _crop(mask)
    if crop is None:
        return No3D("the mask is empty")
    z = depth.metres(crop.rows, crop.cols)[crop.mask]
    z = z[np.isfinite(z)]
    if not len(z):
        return No3D("no valid depth in the mask")
    z = z[np.abs(z - np.median(z)) <= threshold_m]
    z_min, z_max = float(z.min()), float(z.max())
    zc = (z_min + z_max) / 2
    x1, y1, x2, y2 = crop.cols.start, crop.rows.start, crop.cols.stop, crop.rows.stop
    xn, yn = camera.rays(np.array([(x1 + x2) / 2 - 0.5]), np.array([(y1 + y2) / 2 - 0.5]))  # pixel-centre convention
    centre = np.array([xn[0] * zc, yn[0] * zc, zc])
    size = np.array([(x2 - x1) * zc / camera.fx, (y2 - y1) * zc / camera.fy, z_max - z_min])
    eye = np.eye(3)
    return Object3D(centre, centre, size, centre, size, eye, np.zeros((3, 3)), len(z), len(z), int(crop.mask.sum()))


def quaternion_to_matrix(xyzw) -> np.ndarray:
    x, y, z, w = (float(v) for v in xyzw)
    n = x * x + y * y + z * z + w * w
    if not n > 0:
        raise VitronInputError(f"quaternion {tuple(xyzw)} has zero length")
    s = 2.0 / n
    return np.array([
        [1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
        [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
        [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)],
    ])  # fmt: skip


def matrix_to_quaternion(m: np.ndarray) -> tuple[float, float, float, float]:
    """A rotation matrix -> (x, y, z, w), w >= 0 (Shepperd's method, stable for every rotation)."""
    m = np.asarray(m, np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s)
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    q = np.array(q)
    q = q if q[3] >= 0 else -q
    return tuple(float(v) for v in q / np.linalg.norm(q))
