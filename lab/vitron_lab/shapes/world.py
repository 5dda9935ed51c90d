"""ShapesWorld: seeded scenes of coloured shapes with exact per-object masks and boxes.

    scene = generate_scene(seed=7)            # 64x64 RGB, 1-5 shapes, plain or textured background
    scene.objects[0].mask                     # (H, W) bool, the visible part (occluders removed)
    clip = generate_clip(seed=7, frames=8)    # moving shapes with per-frame visible masks

Everything is drawn with OpenCV at the output size (no anti-aliasing), so a mask is exactly the set of pixels
painted in the object's colour. Geometry is sampled in units of the image side, so a scene rendered at another
size is the same scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = ("plain", "striped", "checkered", "noisy")
SIZE_RANGE = (0.11, 0.30)  # shape extent (diameter / side) as a fraction of the image side
LARGE_FROM = 0.20  # extent at or above which a shape is "large"
MIN_VISIBLE = 0.55  # an occluded shape keeps at least this fraction of its own area visible
MIN_PIXELS = 12  # and at least this many pixels (at the reference size)
REFERENCE_SIZE = 64  # layouts are checked at this resolution whatever the output size


@dataclass(frozen=True)
class ShapeSpec:
    """Where and what a shape is, in units of the image side (resolution independent)."""

    shape: str
    colour: str
    cx: float
    cy: float
    extent: float  # diameter of the circle, side of the square, side of the triangle
    angle: float = 0.0  # rotation in degrees (squares and triangles)

    @property
    def size_word(self) -> str:
        return "large" if self.extent >= LARGE_FROM else "small"


@dataclass
class SceneObject:
    spec: ShapeSpec
    mask: np.ndarray  # (H, W) bool, visible pixels only
    full_mask: np.ndarray  # (H, W) bool, the whole shape as if nothing covered it
    depth: int  # drawing order; higher is in front

    @property
    def box_xyxy(self) -> tuple[float, float, float, float]:
        """Tight XYXY box of the visible pixels, pixel-edge convention (x2 = last column + 1)."""
        ys, xs = np.nonzero(self.mask)
        return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def centre_xy(self) -> tuple[float, float]:
        ys, xs = np.nonzero(self.mask)
        return float(xs.mean()), float(ys.mean())

    @property
    def name(self) -> str:
        return f"{self.spec.colour} {self.spec.shape}"


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    objects: list[SceneObject]  # in drawing order (back to front)
    background: str
    seed: int

    @property
    def size(self) -> int:
        return self.image.shape[0]

    def object_ids(self) -> np.ndarray:
        """(H, W) int: index into `objects` of the visible object at each pixel, -1 for background."""
        ids = np.full(self.image.shape[:2], -1, np.int64)
        for index, obj in enumerate(self.objects):
            ids[obj.mask] = index
        return ids


@dataclass
class Clip:
    frames: list[np.ndarray]  # (H, W, 3) uint8 RGB each
    masks: list[list[np.ndarray]]  # masks[t][k]: (H, W) bool visible mask of object k in frame t
    specs: list[ShapeSpec]  # the objects (colour, shape, size); positions are those of frame 0
    background: str
    seed: int
    tracks: list[list[tuple[float, float]]] = field(default_factory=list)  # tracks[t][k]: centre (x, y), pixels


def draw_shape(spec: ShapeSpec, size: int) -> np.ndarray:
    """(size, size) bool mask of one shape."""
    import cv2

    canvas = np.zeros((size, size), np.uint8)
    cx, cy, extent = spec.cx * size, spec.cy * size, spec.extent * size
    if spec.shape == "circle":
        cv2.circle(canvas, (round(cx), round(cy)), max(1, round(extent / 2)), 1, thickness=-1)
    else:
        if spec.shape == "square":
            half = extent / 2
            corners = np.array([(-half, -half), (half, -half), (half, half), (-half, half)])
        elif spec.shape == "triangle":
            r = extent / np.sqrt(3)  # circumradius of an equilateral triangle of side `extent`
            corners = np.array([(0.0, -r), (r * np.sqrt(3) / 2, r / 2), (-r * np.sqrt(3) / 2, r / 2)])
        else:
            raise ValueError(f"unknown shape {spec.shape!r}; expected one of {SHAPES}")
        theta = np.deg2rad(spec.angle)
        rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        points = corners @ rotation.T + (cx, cy)
        cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
    return canvas.astype(bool)


def render_background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Low-saturation backgrounds, so no background pixel reads as one of the shape colours."""
    base = rng.integers(70, 200)
    tint = rng.integers(-12, 13, size=3)
    colour_a = np.clip(base + tint, 0, 255)
    colour_b = np.clip(colour_a + rng.choice([-45, 45]), 0, 255)
    image = np.empty((size, size, 3), np.int64)
    image[:] = colour_a
    if kind == "striped":
        period = int(rng.integers(4, 9)) * size // 64 or 2
        yy, xx = np.mgrid[:size, :size]
        coordinate = xx if rng.random() < 0.5 else yy
        image[(coordinate // (period // 2 or 1)) % 2 == 1] = colour_b
    elif kind == "checkered":
        cell = int(rng.integers(4, 9)) * size // 64 or 2
        yy, xx = np.mgrid[:size, :size]
        image[((yy // cell) + (xx // cell)) % 2 == 1] = colour_b
    elif kind == "noisy":
        image += rng.integers(-25, 26, size=(size, size, 1))
    elif kind != "plain":
        raise ValueError(f"unknown background {kind!r}; expected one of {BACKGROUNDS}")
    return np.clip(image, 0, 255).astype(np.uint8)


def _sample_spec(rng: np.random.Generator, colour: str | None = None, shape: str | None = None) -> ShapeSpec:
    extent = float(rng.uniform(*SIZE_RANGE))
    margin = extent / 2 + 0.02
    return ShapeSpec(
        shape=shape or str(rng.choice(SHAPES)),
        colour=colour or str(rng.choice(list(COLOURS))),
        cx=float(rng.uniform(margin, 1 - margin)),
        cy=float(rng.uniform(margin, 1 - margin)),
        extent=extent,
        angle=float(rng.uniform(-20, 20)),
    )


def _visible_masks(full_masks: list[np.ndarray]) -> list[np.ndarray]:
    visible = []
    for index, mask in enumerate(full_masks):
        covered = np.zeros_like(mask)
        for later in full_masks[index + 1 :]:
            covered |= later
        visible.append(mask & ~covered)
    return visible


def _layout_ok(specs: list[ShapeSpec], full: list[np.ndarray], visible: list[np.ndarray]) -> bool:
    if not all(v.sum() >= max(MIN_PIXELS, MIN_VISIBLE * f.sum()) for f, v in zip(full, visible, strict=True)):
        return False
    # Two touching shapes of one colour would paint one blob with no visible edge between them: no exact mask.
    import cv2

    newest = cv2.dilate(full[-1].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return not any(s.colour == specs[-1].colour and (m & newest).any() for s, m in zip(specs[:-1], full[:-1]))


def compose(specs: list[ShapeSpec], background: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Paint shapes back to front -> (image, full masks, visible masks)."""
    size = background.shape[0]
    image = background.copy()
    full = [draw_shape(spec, size) for spec in specs]
    for spec, mask in zip(specs, full, strict=True):
        image[mask] = COLOURS[spec.colour]
    return image, full, _visible_masks(full)


def generate_scene(seed: int, size: int = 64, min_objects: int = 1, max_objects: int = 5) -> Scene:
    """One scene, fully determined by `seed` (and `size`, which only changes the resolution)."""
    # Layout and background draw from separate streams, and layouts are checked at the reference size, so the
    # same seed gives the same shapes at every resolution.
    rng, background_rng = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])
    count = int(rng.integers(min_objects, max_objects + 1))
    background_kind = str(rng.choice(BACKGROUNDS))
    background = render_background(background_kind, size, background_rng)
    specs: list[ShapeSpec] = []
    # Repeating an earlier colour or shape now and then makes relational and counting questions necessary.
    for _ in range(count):
        for _attempt in range(30):
            colour = shape = None
            if specs and rng.random() < 0.35:
                twin = specs[int(rng.integers(len(specs)))]
                colour, shape = (twin.colour, twin.shape) if rng.random() < 0.5 else (twin.colour, None)
            candidate = _sample_spec(rng, colour, shape)
            trial = [draw_shape(s, REFERENCE_SIZE) for s in [*specs, candidate]]
            if _layout_ok([*specs, candidate], trial, _visible_masks(trial)):
                specs.append(candidate)
                break
    image, full, visible = compose(specs, background)
    objects = [SceneObject(spec, v, f, depth) for depth, (spec, f, v) in enumerate(zip(specs, full, visible, strict=True))]
    return Scene(image=image, objects=objects, background=background_kind, seed=seed)


def generate_clip(seed: int, frames: int = 8, size: int = 64, max_objects: int = 3, speed: float = 0.04,
                  twins: bool = False, min_objects: int = 1) -> Clip:
    """Shapes moving at constant velocity and bouncing off the borders; they may pass in front of each other.

    A shape can be hidden entirely in some frames (its mask is then empty): trackers must cope with that.
    `twins`: 2 to max_objects shapes of one colour and one kind, so only where an object was tells it apart (what
    makes a tracker use its memory instead of segmenting whatever looks right). `min_objects`: fewest shapes.
    """
    rng, background_rng = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])
    fewest = max(2, min_objects) if twins else min_objects
    count = int(rng.integers(fewest, max(max_objects, fewest) + 1))
    background_kind = str(rng.choice(BACKGROUNDS))
    background = render_background(background_kind, size, background_rng)
    specs = [_sample_spec(rng) for _ in range(count)]
    if twins:
        specs = [_sample_spec(rng, specs[0].colour, specs[0].shape) if k else specs[0] for k in range(count)]
    velocity = rng.uniform(-speed, speed, size=(count, 2))
    clip = Clip(frames=[], masks=[], specs=list(specs), background=background_kind, seed=seed)
    current = list(specs)
    for _ in range(frames):
        image, _, visible = compose(current, background)
        clip.frames.append(image)
        clip.masks.append(visible)
        clip.tracks.append([(s.cx * size, s.cy * size) for s in current])
        moved = []
        for k, spec in enumerate(current):
            x, y = spec.cx + velocity[k, 0], spec.cy + velocity[k, 1]
            low, high = spec.extent / 2, 1 - spec.extent / 2
            if not low <= x <= high:
                velocity[k, 0] *= -1
                x = float(np.clip(x, low, high))
            if not low <= y <= high:
                velocity[k, 1] *= -1
                y = float(np.clip(y, low, high))
            moved.append(ShapeSpec(spec.shape, spec.colour, float(x), float(y), spec.extent, spec.angle))
        current = moved
    return clip
