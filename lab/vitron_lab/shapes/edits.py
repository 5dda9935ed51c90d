"""Edits of ShapesWorld scenes with exact ground truth: the scene re-rendered with an object removed, recoloured,
replaced, moved or added, and layouts to generate.

    case = edit_case(scene, "recolour", rng)     # EditCase: the call, the user's request, the true result
    case.truth                                    # the scene re-rendered with the object in its new colour
    read_edit(case, output_image)                 # success read from the pixels: colour, shape, place, gone

The editor's region logic (`plan_edit`) decides which pixels an edit may change; the truth is the re-rendered scene
inside that region and the input outside it, so a perfect editor scores L1 = 0. Colours and shapes are read back
from the output with the palette and the shapes' own rasteriser, nothing learned.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from vitron_ros.core.masks import iou, mask_to_box

from .instructions import format_box
from .world import COLOURS, SHAPES, Scene, ShapeSpec, compose, draw_shape, render_background

EDIT_TASKS = ("remove", "recolour", "replace", "move", "add")
DIRECTIONS = ("left", "right", "up", "down")
COLOUR_TOLERANCE = 60.0  # RGB distance within which a pixel reads as a palette colour (backgrounds are greys)
GONE_FRACTION = 0.1  # a removed object is gone when under this share of its pixels keep its colour
RECOLOUR_FRACTION = 0.7  # a recoloured object has at least this share of its pixels in the new colour
MIN_TARGET_PIXELS = 30  # objects smaller than this are not picked as edit targets


@dataclass
class Expected:
    """An object the output must show: its colour, its shape (None: not judged) and where (mask or box)."""

    colour: str
    shape: str | None
    mask: np.ndarray | None = None  # (H, W) bool: the true pixels (recolour, replace, move)
    box_xyxy: tuple[float, float, float, float] | None = None  # the requested box (add, layout)
    within: np.ndarray | None = None  # (H, W) bool: where to look for it (replace: the edit's region)


@dataclass
class EditCase:
    task: str  # the editor's or generator's task
    module: str  # "editor" or "generator"
    instruction: str  # the invocation's text after "task: "
    request: str  # what a user would say
    source: np.ndarray  # (H, W, 3) uint8 the image edited
    truth: np.ndarray  # (H, W, 3) uint8 the right result (for layouts: one right result)
    target: int | None = None  # index of the edited object in the scene
    mask: np.ndarray | None = None  # the target's visible mask: what the segmenter should find
    box_xyxy: tuple[float, float, float, float] | None = None  # the target's box, or an add's <Region> box
    expect: list[Expected] = field(default_factory=list)
    gone: tuple[str, np.ndarray] | None = None  # (colour, pixels) where the target must no longer be
    region: np.ndarray | None = None  # (H, W) bool: the pixels the edit may change, planned from the true mask


def scene_background(scene: Scene) -> np.ndarray:
    """The scene's background, redrawn exactly from its seed (generate_scene draws it from stream [seed, 1])."""
    return render_background(scene.background, scene.size, np.random.default_rng([scene.seed, 1]))


def render(scene: Scene, specs: list[ShapeSpec]) -> np.ndarray:
    return compose(specs, scene_background(scene))[0]


def name_of(spec: ShapeSpec) -> str:
    return f"{spec.colour} {spec.shape}"


def editable_targets(scene: Scene) -> list[int]:
    """Objects a plain 'the COLOUR SHAPE' singles out, big enough to edit and not hidden behind others (so an edit's
    truth is the object's own shape)."""
    names = [name_of(o.spec) for o in scene.objects]
    return [i for i, o in enumerate(scene.objects)
            if names.count(names[i]) == 1 and o.area >= MIN_TARGET_PIXELS and o.area >= 0.95 * o.full_mask.sum()]


def _plan(task: str, instruction: str, mask, box, image):
    from vitron_ros.core.specialists.base import SpecialistCall
    from vitron_ros.core.specialists.diffusion import EditorConfig
    from vitron_ros.core.specialists.editor import plan_edit

    call = SpecialistCall(task=task, instruction=instruction, box_xyxy=box, mask=mask)
    return plan_edit(call, image, EditorConfig(model="-"))


def edit_case(scene: Scene, task: str, rng: np.random.Generator) -> EditCase | None:
    """One edit of `task` on `scene` with its true result, or None when the scene has no object to do it on."""
    specs = [o.spec for o in scene.objects]
    if task == "add":
        return _add_case(scene, specs, rng)
    targets = editable_targets(scene)
    if not targets:
        return None
    k = int(targets[int(rng.integers(len(targets)))])
    obj, image = scene.objects[k], scene.image
    phrase = f"the {name_of(obj.spec)}"
    box = obj.box_xyxy
    others = specs[:k] + specs[k + 1:]
    if task == "remove":
        plan = _plan(task, phrase, obj.mask, box, image)
        truth = np.where(plan.region[..., None], render(scene, others), image).astype(np.uint8)
        request = str(rng.choice([f"remove {phrase}.", f"erase {phrase}.", f"take away {phrase}."]))
        return EditCase(task, "editor", phrase, request, image, truth, k, obj.mask, box, [],
                        (obj.spec.colour, obj.mask), plan.region)
    if task == "recolour":
        colour = str(rng.choice([c for c in COLOURS if c != obj.spec.colour]))
        plan = _plan(task, f"{phrase} to {colour}", obj.mask, box, image)
        new = specs[:k] + [replace(obj.spec, colour=colour)] + specs[k + 1:]
        truth = np.where(plan.region[..., None], render(scene, new), image).astype(np.uint8)
        request = str(rng.choice([f"make {phrase} {colour}.", f"paint {phrase} {colour}.",
                                  f"recolour {phrase} to {colour}."]))
        return EditCase(task, "editor", f"{phrase} to {colour}", request, image, truth, k, obj.mask, box,
                        [Expected(colour, None, mask=obj.mask)], None, plan.region)
    if task == "replace":
        # always a new shape, so the old object left in place never passes for the new one
        colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice([s for s in SHAPES if s != obj.spec.shape]))
        x1, y1, x2, y2 = box  # centred on the old object's box (a triangle's own centre sits low in its box)
        new_spec = ShapeSpec(shape, colour, (x1 + x2) / 2 / scene.size, (y1 + y2) / 2 / scene.size,
                             obj.spec.extent * 0.85)
        plan = _plan(task, f"{phrase} with a {colour} {shape}", obj.mask, box, image)
        truth = np.where(plan.region[..., None], render(scene, specs[:k] + [new_spec] + specs[k + 1:]), image)
        truth = truth.astype(np.uint8)
        new_mask = plan.region & np.all(truth == COLOURS[colour], axis=-1)
        request = f"replace {phrase} with a {colour} {shape}."
        return EditCase(task, "editor", f"{phrase} with a {colour} {shape}", request, image, truth, k, obj.mask, box,
                        [Expected(colour, shape, mask=new_mask, within=plan.region)],
                        (obj.spec.colour, obj.mask & ~new_mask), plan.region)
    if task == "move":
        from vitron_ros.core.errors import VitronInputError

        for direction in rng.permutation(DIRECTIONS):
            instruction = f"{phrase} to the {direction}"
            try:
                plan = _plan(task, instruction, obj.mask, box, image)
            except VitronInputError:
                continue  # would leave the image
            moved = plan.region & ~plan.fill
            truth = np.where(moved[..., None], plan.start, render(scene, others))
            truth = np.where(plan.region[..., None], truth, image).astype(np.uint8)
            return EditCase(task, "editor", instruction, f"move {phrase} to the {direction}.", image, truth, k,
                            obj.mask, box, [Expected(obj.spec.colour, None, mask=moved)],
                            (obj.spec.colour, plan.fill & obj.mask), plan.region)
        return None
    raise ValueError(f"unknown edit task {task!r}; expected one of {EDIT_TASKS}")


def _new_spec(rng: np.random.Generator, occupied: np.ndarray, size: int) -> ShapeSpec | None:
    """A shape (angle 0) on free space: its box overlaps no object."""
    for _ in range(20):
        extent = float(rng.uniform(0.2, 0.32))
        margin = extent / 2 + 0.03
        spec = ShapeSpec(str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS))), float(rng.uniform(margin, 1 - margin)),
                         float(rng.uniform(margin, 1 - margin)), extent)
        mask = draw_shape(spec, size)
        x1, y1, x2, y2 = mask_to_box(mask)
        if not occupied[int(y1):int(y2), int(x1):int(x2)].any():
            return spec
    return None


def _add_case(scene: Scene, specs: list[ShapeSpec], rng: np.random.Generator) -> EditCase | None:
    occupied = np.zeros(scene.image.shape[:2], bool)
    for obj in scene.objects:
        occupied |= obj.mask
    spec = _new_spec(rng, occupied, scene.size)
    if spec is None:
        return None
    mask = draw_shape(spec, scene.size)
    box = mask_to_box(mask)
    region = np.zeros_like(mask)
    region[int(box[1]):int(box[3]), int(box[0]):int(box[2])] = True
    truth = np.where(region[..., None], render(scene, [*specs, spec]), scene.image).astype(np.uint8)
    where = format_box(box, scene.image.shape[:2])
    request = f"add a {name_of(spec)} in {where}."
    return EditCase("add", "editor", f"a {name_of(spec)}", request, scene.image, truth, None, None, box,
                    [Expected(spec.colour, spec.shape, mask=mask & region, box_xyxy=box)], None, region)


def layout_case(seed: int, size: int = 64, objects: int | None = None) -> EditCase:
    """A layout to generate: 1-3 shapes (angle 0, boxes apart) and the generator's layout instruction for them."""
    rng = np.random.default_rng([seed, 7])
    count = objects or int(rng.integers(1, 4))
    background = render_background("plain", size, rng)
    occupied = np.zeros((size, size), bool)
    specs, expect, parts = [], [], []
    while len(specs) < count:
        spec = _new_spec(rng, occupied, size)
        if spec is None:
            break
        mask = draw_shape(spec, size)
        box = mask_to_box(mask)
        occupied[int(box[1]):int(box[3]), int(box[0]):int(box[2])] = True
        specs.append(spec)
        expect.append(Expected(spec.colour, spec.shape, mask=mask, box_xyxy=box))
        parts.append(f"<p> a {name_of(spec)} </p> <Region>{format_box(box, (size, size))}</Region>")
    truth = compose(specs, background)[0]
    names = " and ".join(f"a {name_of(s)} in {format_box(e.box_xyxy, (size, size))}" for s, e in zip(specs, expect))
    return EditCase("layout", "generator", " ".join(parts), f"draw {names}.", np.zeros_like(truth), truth,
                    expect=expect, region=np.ones((size, size), bool))


# -- reading the output --------------------------------------------------------------------------------------


def colour_mask(image: np.ndarray, colour: str, tolerance: float = COLOUR_TOLERANCE) -> np.ndarray:
    distance = np.linalg.norm(image.astype(np.float32) - np.asarray(COLOURS[colour], np.float32), axis=-1)
    return distance < tolerance


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def read_shape(mask: np.ndarray) -> str | None:
    """Which upright shape `mask` is: the one whose rasterisation, fitted to the mask's box, overlaps it most."""
    if mask.sum() < 4:
        return None
    size = mask.shape[0]
    x1, y1, x2, y2 = mask_to_box(mask)
    extent = (x2 - x1 - 1) / size  # OpenCV fills both end pixels: a shape of extent e spans e + 1 pixels
    cx, cy = (x1 + x2 - 1) / 2 / size, (y1 + y2 - 1) / 2 / size
    candidates = {
        "circle": ShapeSpec("circle", "red", cx, cy, extent),
        "square": ShapeSpec("square", "red", cx, cy, extent),
        # an upright triangle's centre sits a third of its height above its base, not at its box's middle
        "triangle": ShapeSpec("triangle", "red", cx, y1 / size + extent / np.sqrt(3), extent),
    }
    return max(candidates, key=lambda s: iou(draw_shape(candidates[s], size), mask))


def _largest_component(mask: np.ndarray, box=None) -> np.ndarray:
    import cv2

    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    if count <= 1:
        return np.zeros_like(mask)
    if box is None:
        sizes = np.bincount(labels.ravel())[1:]
        return labels == 1 + int(np.argmax(sizes))
    best = max(range(1, count), key=lambda label: box_iou(mask_to_box(labels == label), box))
    return labels == best


def _overlapping_component(mask: np.ndarray, target: np.ndarray) -> np.ndarray:
    import cv2

    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    if count <= 1:
        return np.zeros_like(mask)
    overlaps = np.bincount(labels[target], minlength=count)[1:]
    return labels == 1 + int(np.argmax(overlaps))


def read_expected(image: np.ndarray, expected: Expected) -> bool:
    """Whether `image` shows the expected object: its colour (and shape) at its place."""
    found = colour_mask(image, expected.colour)
    if expected.box_xyxy is not None:  # add / layout: a blob of that colour whose box matches the requested one
        blob = _largest_component(found, expected.box_xyxy)
        if not blob.any() or box_iou(mask_to_box(blob), expected.box_xyxy) < 0.5:
            return False
        return expected.shape is None or read_shape(blob) == expected.shape
    if expected.shape is None:  # recolour / move: the true pixels now in that colour
        return bool(expected.mask.any()) and found[expected.mask].mean() >= RECOLOUR_FRACTION
    # replace: the blob of that colour in the region that overlaps the truth most, uncut, so its own shape is read
    search = found & expected.within if expected.within is not None else found
    blob = _overlapping_component(search, expected.mask)
    return bool(blob.any()) and iou(blob, expected.mask) >= 0.5 and read_shape(blob) == expected.shape


def read_edit(case: EditCase, image: np.ndarray) -> dict:
    """Success of one edit read from its output: every expected object present, and the removed one gone."""
    present = [read_expected(image, e) for e in case.expect]
    gone = True
    if case.gone is not None and case.gone[1].any():
        gone = bool(colour_mask(image, case.gone[0])[case.gone[1]].mean() < GONE_FRACTION)
    return {"success": all(present) and gone, "objects": present, "gone": gone}
