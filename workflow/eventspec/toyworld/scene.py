"""Toy road scenes: what is in them (the ground truth) and how they look.

A fixed camera looks across a road: sky, distant buildings, a grey road band with
lane markings, a sidewalk. It is the same street in every sequence of a world (the
``street_seed``), by day or by night, like a traffic camera; the traffic changes.
The background is static, so only moving objects (and sensor noise) produce events. Each object is a category (car, truck, pedestrian,
cyclist) with a colour, a direction and a speed:

- left / right: crosses the image horizontally in one of three lanes, side on,
  facing where it goes;
- approaching: seen from the front, grows and moves down the road towards the camera;
- receding: seen from the back, shrinks and moves up the road away from it.

Objects stay wholly in view and (almost) unoccluded for the whole sequence, so
what a window shows is what its ground truth says.

Images are linear-intensity RGB (float32, ~0..1; lights at night may exceed 1).
Objects are sprites drawn once at high resolution and composited with exact
area sampling (via a summed-area table), so sub-pixel motion and smooth scaling
give smooth intensity changes rather than pixel-snapping artefacts that would
show up as spurious events.

Geometry is relative to the image size (sprite sizes are in units of
``height / 72`` pixels), so a smaller test resolution shows the same scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

CATEGORIES = ("car", "truck", "pedestrian", "cyclist")
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.80, 0.04, 0.03),
    "blue": (0.04, 0.10, 0.75),
    "green": (0.05, 0.50, 0.07),
    "yellow": (0.85, 0.70, 0.04),
    "white": (0.85, 0.85, 0.82),
    "black": (0.025, 0.025, 0.03),
}
DIRECTIONS = ("left", "right", "approaching", "receding")
SPEEDS = ("slow", "fast")

REFERENCE_HEIGHT_PX = 72
"""Sprite sizes are given in units of ``height / REFERENCE_HEIGHT_PX`` pixels."""
OBJECT_SCALE = 1.4
"""Sprite units per reference pixel: large enough for a tiny ViT (16 px patches at 64 px) to see, small enough
that three objects fit side by side."""
SUPERSAMPLE = 4
"""Sprite raster pixels per sprite unit."""

NIGHT_OBJECT_LIGHT = 0.2
NIGHT_BACKGROUND_LIGHT = 0.07

HORIZONTAL_SPEED = {"slow": 0.12, "fast": 0.40}
"""Image widths per second for left/right motion: in a 1 s window a fast object crosses 40% of the image, a slow
one 12%, so the motion is plain at the 4 x 4 patch grid of the toy models."""
DEPTH_GROWTH_PER_S = {"slow": 1.35, "fast": 2.2}
"""Apparent size factor per second for approaching motion (its inverse for receding)."""
DEPTH_DIRECTIONS = ("approaching", "receding")
LANES = ((0.60, 1.0), (0.72, 1.2), (0.85, 1.4))
"""(object bottom as a fraction of the height, scale) for left/right motion, far to near."""
FAR_SCALE, NEAR_SCALE = 0.7, 1.6
"""Scale range of an object moving in depth."""
GROUND_HORIZON, GROUND_SLOPE = 0.363, 0.367
"""On a flat road an object's bottom sits GROUND_HORIZON + GROUND_SLOPE * scale down the image (fractions of the
height): a depth mover grows and descends together, from 0.62 at FAR_SCALE to 0.95 at NEAR_SCALE."""
EMPTY_SCENE_PROBABILITY = 0.12
VISIBLE_FRACTION = 0.5
"""An object counts as visible when at least this share of it is inside the image (and not faded)."""
MAX_HIDDEN_FRACTION = 0.1
"""No object may ever have more than this share of its silhouette hidden behind others."""
PLACEMENT_ATTEMPTS = 40
"""Random paths tried per object before the scene makes do with fewer objects."""
OCCLUSION_CHECKS = 9
"""Instants, evenly spread over the sequence, at which occlusion is checked (motion is smooth between them)."""

ROAD_TOP, ROAD_BOTTOM = 0.50, 0.90
LANE_MARKINGS = (0.66, 0.78)
HORIZON = 0.40


@dataclass(frozen=True)
class Sprite:
    """An object's look, facing right, as premultiplied linear RGB + alpha.

    ``integral`` is the summed-area table of the raster (float64, one zero row and
    column in front), which makes exact box-filtered resampling cheap at any scale.
    """

    raster: np.ndarray
    integral: np.ndarray = field(repr=False)

    @staticmethod
    def from_raster(raster: np.ndarray) -> Sprite:
        integral = np.zeros((raster.shape[0], raster.shape[1] + 1, raster.shape[2] + 1))
        integral[:, 1:, 1:] = raster.astype(np.float64).cumsum(axis=1).cumsum(axis=2)
        return Sprite(raster=raster, integral=integral)

    @property
    def width_units(self) -> float:
        return self.raster.shape[2] / SUPERSAMPLE

    @property
    def height_units(self) -> float:
        return self.raster.shape[1] / SUPERSAMPLE

    def flipped(self) -> Sprite:
        return Sprite.from_raster(np.ascontiguousarray(self.raster[:, :, ::-1]))


@dataclass(frozen=True)
class Placement:
    """Where an object stands: horizontal centre and bottom (pixels), and size (pixels per sprite unit)."""

    center_x: float
    bottom_y: float
    px_per_unit: float


@dataclass(frozen=True)
class Pose:
    """An object's image-space box at one instant (top-left corner, pixels)."""

    x0: float
    y0: float
    width: float
    height: float
    px_per_unit: float

    def fraction_inside(self, image_width: int, image_height: int) -> float:
        inside_x = max(0.0, min(self.x0 + self.width, image_width) - max(self.x0, 0.0))
        inside_y = max(0.0, min(self.y0 + self.height, image_height) - max(self.y0, 0.0))
        return inside_x * inside_y / (self.width * self.height)


@dataclass(frozen=True)
class SceneObject:
    """One moving object: its ground-truth attributes and its trajectory.

    The object exists from ``t_start_s`` for ``travel_s`` seconds, moving from
    ``start`` to ``end`` (position linear in time, size geometric, so growth looks steady).
    """

    id: int
    category: str
    color: str
    direction: str
    speed: str
    t_start_s: float
    travel_s: float
    start: Placement
    end: Placement
    sprite: Sprite = field(repr=False)

    def pose(self, t_s: float) -> Pose | None:
        progress = (t_s - self.t_start_s) / self.travel_s
        if not 0.0 <= progress <= 1.0:
            return None
        px_per_unit = self.start.px_per_unit * (self.end.px_per_unit / self.start.px_per_unit) ** progress
        center_x = self.start.center_x + progress * (self.end.center_x - self.start.center_x)
        bottom_y = self.start.bottom_y + progress * (self.end.bottom_y - self.start.bottom_y)
        width = self.sprite.width_units * px_per_unit
        height = self.sprite.height_units * px_per_unit
        return Pose(
            x0=center_x - width / 2,
            y0=bottom_y - height,
            width=width,
            height=height,
            px_per_unit=px_per_unit,
        )

    def describe(self) -> dict:
        return {
            "id": self.id,
            "category": self.category,
            "color": self.color,
            "direction": self.direction,
            "speed": self.speed,
        }


@dataclass(frozen=True)
class Scene:
    """One sequence's world: a static background and the objects passing through it."""

    width: int
    height: int
    time_of_day: str
    background: np.ndarray = field(repr=False)
    objects: tuple[SceneObject, ...]

    def render(self, t_s: float) -> np.ndarray:
        """Linear-intensity RGB image (height, width, 3) at time ``t_s``; far objects are drawn first."""
        image = self.background.copy()
        for obj, pose in self.back_to_front(t_s):
            composite_sprite(image, obj.sprite, pose)
        return image

    def back_to_front(self, t_s: float) -> list[tuple[SceneObject, Pose]]:
        """The objects present at ``t_s`` with their poses, in drawing order: lower bottom edge = nearer = later."""
        posed = [(obj, obj.pose(t_s)) for obj in self.objects]
        return sorted(((o, p) for o, p in posed if p is not None), key=lambda item: item[1].y0 + item[1].height)

    def object_map(self, t_s: float) -> np.ndarray:
        """uint8 (height, width): 1 + the id of the front-most object covering at least half of each pixel, else 0."""
        labels = np.zeros((self.height, self.width), dtype=np.uint8)
        for obj, pose in self.back_to_front(t_s):
            placed = resample_sprite(obj.sprite, pose, self.height, self.width)
            if placed is not None:
                (r0, c0), patch = placed
                region = labels[r0 : r0 + patch.shape[1], c0 : c0 + patch.shape[2]]
                region[patch[3] >= 0.5] = obj.id + 1
        return labels

    def visible_ids(self, t_s: float) -> list[int]:
        visible = []
        for obj in self.objects:
            pose = obj.pose(t_s)
            if (
                pose is not None
                and pose.fraction_inside(self.width, self.height) >= VISIBLE_FRACTION
            ):
                visible.append(obj.id)
        return visible


def luminance(image: np.ndarray) -> np.ndarray:
    """Linear luminance (Rec. 709 weights) of a linear RGB image: what a monochrome event sensor sees."""
    return image @ np.array([0.2126, 0.7152, 0.0722], dtype=image.dtype)


def composite_sprite(image: np.ndarray, sprite: Sprite, pose: Pose) -> None:
    """Draw ``sprite`` over ``image`` in place, area-averaging the sprite over each image pixel."""
    placed = resample_sprite(sprite, pose, *image.shape[:2])
    if placed is None:
        return
    (r0, c0), patch = placed
    region = image[r0 : r0 + patch.shape[1], c0 : c0 + patch.shape[2]]
    region *= (1.0 - patch[3].astype(image.dtype))[..., None]
    region += patch[:3].transpose(1, 2, 0).astype(image.dtype)


def resample_sprite(sprite: Sprite, pose: Pose, height: int, width: int) -> tuple[tuple[int, int], np.ndarray] | None:
    """The sprite's premultiplied RGBA averaged over the image pixels it covers, with that region's top-left
    (row, column); None when it lies wholly outside the image."""
    c0, c1 = max(0, math.floor(pose.x0)), min(width, math.ceil(pose.x0 + pose.width))
    r0, r1 = max(0, math.floor(pose.y0)), min(height, math.ceil(pose.y0 + pose.height))
    if c0 >= c1 or r0 >= r1:
        return None
    scale = SUPERSAMPLE / pose.px_per_unit
    xs = np.clip((np.arange(c0, c1 + 1) - pose.x0) * scale, 0.0, sprite.raster.shape[2])
    ys = np.clip((np.arange(r0, r1 + 1) - pose.y0) * scale, 0.0, sprite.raster.shape[1])
    corners = _sample_integral(sprite.integral, ys, xs)
    return (r0, c0), np.diff(np.diff(corners, axis=1), axis=2) * (1.0 / scale**2)


def hidden_fractions(objects: list[SceneObject], t_s: float, width: int, height: int) -> list[float]:
    """For each object, the share of its silhouette that objects drawn in front of it cover at ``t_s``."""
    poses = [obj.pose(t_s) for obj in objects]
    alphas = []
    for obj, pose in zip(objects, poses):
        alpha = np.zeros((height, width))
        placed = resample_sprite(obj.sprite, pose, height, width)
        if placed is not None:
            (r0, c0), patch = placed
            alpha[r0 : r0 + patch.shape[1], c0 : c0 + patch.shape[2]] = patch[3]
        alphas.append(alpha)
    depth = [pose.y0 + pose.height for pose in poses]
    hidden = []
    for i, alpha in enumerate(alphas):
        clear = np.ones_like(alpha)
        for j, other in enumerate(alphas):
            if depth[j] > depth[i] or (depth[j] == depth[i] and j > i):
                clear *= 1.0 - other
        hidden.append(float((alpha * (1.0 - clear)).sum() / max(alpha.sum(), 1e-9)))
    return hidden


def _sample_integral(integral: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear samples of a summed-area table on the grid ys x xs (raster coordinates).

    The integral of a piecewise-constant raster is exactly bilinear inside each cell,
    so differences of these samples are exact box-filter sums.
    """
    return _interpolate_along(_interpolate_along(integral, ys, axis=1), xs, axis=2)


def _interpolate_along(array: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``array`` at fractional indices ``coords`` along ``axis``."""
    index = np.minimum(coords.astype(np.int64), array.shape[axis] - 2)
    weight = np.expand_dims(coords - index, [d for d in range(array.ndim) if d != axis])
    low = np.take(array, index, axis=axis)
    return low + (np.take(array, index + 1, axis=axis) - low) * weight


# ----------------------------------------------------------------------------- sprites


@dataclass(frozen=True)
class _Parts:
    """Colours of an object's fixed parts under the scene's lighting."""

    body: np.ndarray
    glass: np.ndarray
    tyre: np.ndarray
    skin: np.ndarray
    trousers: np.ndarray
    headlight: np.ndarray
    taillight: np.ndarray
    hair: np.ndarray
    plate: np.ndarray

    @staticmethod
    def lit(color: str, night: bool) -> _Parts:
        light = NIGHT_OBJECT_LIGHT if night else 1.0

        def rgb(values: tuple[float, float, float], scale: float = light) -> np.ndarray:
            return np.array(values, dtype=np.float32) * scale

        return _Parts(
            body=rgb(COLORS[color]),
            glass=rgb((0.10, 0.13, 0.16)),
            tyre=rgb((0.02, 0.02, 0.02)),
            skin=rgb((0.65, 0.42, 0.30)),
            trousers=rgb((0.12, 0.12, 0.18)),
            headlight=rgb((1.6, 1.5, 1.2) if night else (0.75, 0.75, 0.65), 1.0),
            taillight=rgb((0.9, 0.05, 0.04) if night else (0.55, 0.03, 0.03), 1.0),
            hair=rgb((0.08, 0.05, 0.03)),
            plate=rgb((0.8, 0.8, 0.72)),
        )


class _Canvas:
    """A supersampled RGBA raster on which a sprite is drawn with simple shapes, in sprite units."""

    def __init__(self, width_units: float, height_units: float) -> None:
        w, h = round(width_units * SUPERSAMPLE), round(height_units * SUPERSAMPLE)
        self.rgb = np.zeros((3, h, w), dtype=np.float32)
        self.alpha = np.zeros((h, w), dtype=np.float32)
        self._x = ((np.arange(w) + 0.5) / SUPERSAMPLE)[None, :]
        self._y = ((np.arange(h) + 0.5) / SUPERSAMPLE)[:, None]

    def rect(self, x0: float, y0: float, x1: float, y1: float, rgb: np.ndarray) -> None:
        self._paint((self._x >= x0) & (self._x < x1) & (self._y >= y0) & (self._y < y1), rgb)

    def disk(self, cx: float, cy: float, radius: float, rgb: np.ndarray) -> None:
        self._paint((self._x - cx) ** 2 + (self._y - cy) ** 2 < radius**2, rgb)

    def ring(self, cx: float, cy: float, outer: float, inner: float, rgb: np.ndarray) -> None:
        d2 = (self._x - cx) ** 2 + (self._y - cy) ** 2
        self._paint((d2 < outer**2) & (d2 >= inner**2), rgb)

    def _paint(self, mask: np.ndarray, rgb: np.ndarray) -> None:
        self.rgb[:, mask] = rgb[:, None]
        self.alpha[mask] = 1.0

    def sprite(self) -> Sprite:
        return Sprite.from_raster(np.concatenate([self.rgb * self.alpha, self.alpha[None]]))


def _draw_truck(parts: _Parts, night: bool) -> _Canvas:
    """Long, tall box with a lower cab in front and three wheels: 32 x 17 units."""
    c = _Canvas(32, 17)
    c.rect(0, 0, 21, 14, parts.body)
    c.rect(21, 9, 23, 13, parts.tyre)
    c.rect(22.5, 4.5, 32, 14, parts.body)
    c.rect(27, 5.5, 31, 9, parts.glass)
    c.rect(0, 13, 32, 14.5, parts.tyre)
    for x in (5, 10, 27.5):
        c.disk(x, 14.6, 2.35, parts.tyre)
    c.rect(31, 10.5, 32, 12, parts.headlight)
    c.rect(0, 10.5, 1, 12, parts.taillight)
    return c


def _draw_car(parts: _Parts, night: bool) -> _Canvas:
    """Medium, low body with a cabin, two windows and two wheels: 20 x 9 units."""
    c = _Canvas(20, 9)
    c.rect(0, 3.5, 20, 7.5, parts.body)
    c.rect(4, 0, 15, 4, parts.body)
    c.rect(5, 0.9, 9.3, 3.6, parts.glass)
    c.rect(10, 0.9, 14, 3.6, parts.glass)
    for x in (4.5, 15.5):
        c.disk(x, 7.3, 1.7, parts.tyre)
    c.rect(19, 4.3, 20, 5.5, parts.headlight)
    c.rect(0, 4.3, 1, 5.5, parts.taillight)
    return c


def _draw_pedestrian(parts: _Parts, night: bool) -> _Canvas:
    """Tall and thin: head, coloured torso, two legs: 4 x 14 units."""
    c = _Canvas(4, 14)
    c.disk(2, 1.5, 1.4, parts.skin)
    c.rect(0.5, 3, 3.5, 8.5, parts.body)
    c.rect(0.7, 8.5, 1.8, 14, parts.trousers)
    c.rect(2.2, 8.5, 3.3, 14, parts.trousers)
    return c


def _draw_cyclist(parts: _Parts, night: bool) -> _Canvas:
    """Two ring wheels, a coloured frame and rider: 13 x 13 units; a front lamp at night."""
    c = _Canvas(13, 13)
    for x in (3, 10):
        c.ring(x, 10, 2.9, 2.2, parts.tyre)
    c.rect(3, 8.6, 10, 9.4, parts.body)
    c.rect(5.3, 5.5, 6.1, 9.4, parts.body)
    c.rect(9.5, 4, 10.3, 9, parts.tyre)
    c.rect(5.5, 6.5, 6.5, 10, parts.trousers)
    c.rect(4.8, 2.5, 7.8, 7, parts.body)
    c.rect(7.5, 3.5, 10.5, 4.3, parts.body)
    c.disk(7.2, 1.3, 1.3, parts.skin)
    if night:
        c.disk(10.9, 5.5, 0.7, parts.headlight)
    return c


def _draw_car_end(parts: _Parts, front: bool) -> _Canvas:
    """A car seen from the front (headlights, dark grille) or the back (taillights, light plate): 11 x 9 units."""
    c = _Canvas(11, 9)
    c.rect(0, 3.5, 11, 7.5, parts.body)
    c.rect(1.5, 0, 9.5, 4, parts.body)
    c.rect(2.3, 0.8, 8.7, 3.6, parts.glass)
    for x in (0.6, 8.6):
        c.rect(x, 7, x + 1.8, 9, parts.tyre)
    for x in (0.5, 8.5):
        c.rect(x, 4.3, x + 2, 5.8, parts.headlight if front else parts.taillight)
    c.rect(3.5, 5.0, 7.5, 6.5, parts.tyre if front else parts.plate)
    return c


def _draw_truck_end(parts: _Parts, front: bool) -> _Canvas:
    """A truck seen from the front (cab, windscreen, headlights) or the back (cargo doors, taillights): 15 x 17."""
    c = _Canvas(15, 17)
    if front:
        c.rect(0, 0, 15, 5, parts.body)
        c.rect(1, 4.5, 14, 14, parts.body)
        c.rect(2, 5.5, 13, 9, parts.glass)
        c.rect(5, 10, 10, 13, parts.tyre)
    else:
        c.rect(0, 0, 15, 14, parts.body)
        c.rect(7.3, 1, 7.7, 13, parts.tyre)
        c.rect(0, 13, 15, 14.5, parts.tyre)
    for x in (1.5, 11.5):
        c.rect(x, 10.5, x + 2, 12, parts.headlight if front else parts.taillight)
    for x in (1, 11.5):
        c.rect(x, 14, x + 2.5, 17, parts.tyre)
    return c


def _draw_pedestrian_end(parts: _Parts, front: bool) -> _Canvas:
    """A pedestrian facing the camera (face, hands) or walking away (hair, backpack): 5 x 14 units."""
    c = _Canvas(5, 14)
    c.disk(2.5, 1.5, 1.4, parts.skin if front else parts.hair)
    c.rect(0.8, 3, 4.2, 8.5, parts.body)
    for x in (0.2, 4.2):
        c.rect(x, 3.3, x + 0.6, 7.5, parts.body)
        if front:
            c.rect(x, 7.5, x + 0.6, 8.3, parts.skin)
    if not front:
        c.rect(1.4, 3.6, 3.6, 7, parts.trousers)
    c.rect(1.0, 8.5, 2.2, 14, parts.trousers)
    c.rect(2.8, 8.5, 4.0, 14, parts.trousers)
    return c


def _draw_cyclist_end(parts: _Parts, front: bool) -> _Canvas:
    """A cyclist seen head-on (front lamp) or from behind (red rear light), wide handlebar, one thick wheel:
    8 x 13 units."""
    c = _Canvas(8, 13)
    c.rect(3.2, 7.5, 4.8, 13, parts.tyre)
    c.rect(2, 2.5, 6, 7.5, parts.body)
    c.disk(4, 1.3, 1.3, parts.skin if front else parts.hair)
    c.rect(0, 4, 8, 5, parts.tyre)
    c.rect(2.2, 7.5, 3.0, 11, parts.trousers)
    c.rect(5.0, 7.5, 5.8, 11, parts.trousers)
    if front:
        c.disk(4, 6.0, 0.8, parts.headlight)
    else:
        c.disk(4, 8.5, 0.7, parts.taillight)
    return c


_SIDE_VIEWS = {"car": _draw_car, "truck": _draw_truck, "pedestrian": _draw_pedestrian, "cyclist": _draw_cyclist}
_END_VIEWS = {
    "car": _draw_car_end,
    "truck": _draw_truck_end,
    "pedestrian": _draw_pedestrian_end,
    "cyclist": _draw_cyclist_end,
}
VIEWS = ("side", "front", "back")


def make_sprite(category: str, color: str, night: bool, view: str = "side") -> Sprite:
    """The sprite of an object lit for day or night: its side facing right, its front, or its back."""
    parts = _Parts.lit(color, night)
    if view == "side":
        return _SIDE_VIEWS[category](parts, night).sprite()
    return _END_VIEWS[category](parts, view == "front").sprite()


# ----------------------------------------------------------------------------- background


def render_background(rng: np.random.Generator, width: int, height: int, night: bool) -> np.ndarray:
    """The static part of the scene: sky, buildings, grass, road with markings, sidewalk."""
    v = ((np.arange(height) + 0.5) / height)[:, None]
    u = ((np.arange(width) + 0.5) / width)[None, :]
    image = np.zeros((height, width, 3), dtype=np.float32)

    sky_mix = np.clip(v / HORIZON, 0, 1)[..., None]
    image[:] = (1 - sky_mix) * np.array([0.30, 0.45, 0.85]) + sky_mix * np.array([0.65, 0.75, 0.90])
    _paint_rows(image, v, HORIZON, ROAD_TOP, np.array([0.12, 0.18, 0.08]))
    windows = _paint_buildings(rng, image, u, v)
    _paint_rows(image, v, ROAD_TOP, ROAD_BOTTOM, np.array([0.11, 0.11, 0.115]))
    road = ((v >= ROAD_TOP) & (v < ROAD_BOTTOM)).ravel()
    image[road] *= (1 + 0.06 * rng.standard_normal((int(road.sum()), width, 1))).astype(np.float32)
    _paint_markings(image, width, height)
    _paint_rows(image, v, ROAD_BOTTOM, 1.0, np.array([0.25, 0.24, 0.22]))
    seams = (v >= ROAD_BOTTOM) & (((u * 10) % 1.0) < 1.0 / width * 10)
    image[seams] *= 0.7

    if night:
        image *= NIGHT_BACKGROUND_LIGHT
        image[windows & (rng.random(windows.shape) < 0.35)] = np.array([0.5, 0.4, 0.15])
        image += _street_lamps(rng, u, v)
    return image.astype(np.float32)


def _paint_rows(image: np.ndarray, v: np.ndarray, top: float, bottom: float, rgb: np.ndarray) -> None:
    rows = ((v >= top) & (v < bottom)).ravel()
    image[rows] = rgb


def _paint_buildings(rng: np.random.Generator, image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Blocks of muted colour along the horizon with a grid of windows; returns the window mask."""
    windows = np.zeros(image.shape[:2], dtype=bool)
    left = 0.0
    while left < 1.0:
        right = left + rng.uniform(0.08, 0.2)
        top = rng.uniform(0.18, 0.36)
        block = (u >= left) & (u < right) & (v >= top) & (v < 0.46)
        image[block] = rng.uniform(0.15, 0.45) * np.array([1.0, 0.95, 0.85]) * rng.uniform(0.8, 1.0, 3)
        grid = ((u - left) * 40 % 1.0 < 0.5) & ((v - top) * 40 % 1.0 < 0.5) & (v < 0.43)
        windows |= block & grid
        left = right + rng.uniform(0.0, 0.05)
    image[windows] *= 0.5
    return windows


def _paint_markings(image: np.ndarray, width: int, height: int) -> None:
    """Solid edge lines and dashed lane lines, one pixel row each."""
    paint = np.array([0.7, 0.7, 0.65], dtype=np.float32)
    dashes = ((np.arange(width) / width * 6) % 1.0) < 0.5
    for edge in (ROAD_TOP, ROAD_BOTTOM - 1.0 / height):
        image[int(edge * height)] = paint
    for lane in LANE_MARKINGS:
        image[int(lane * height), dashes] = paint


def _street_lamps(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Warm pools of light on the road and bright lamp heads above it (night only)."""
    light = np.zeros((v.shape[0], u.shape[1], 3), dtype=np.float32)
    warm = np.array([0.9, 0.7, 0.4], dtype=np.float32)
    for x in rng.uniform(0.1, 0.9, size=3):
        pool = np.exp(-(((u - x) / 0.12) ** 2) - ((v - 0.62) / 0.1) ** 2)
        light += 0.04 * pool[..., None] * warm
        head = np.exp(-(((u - x) / 0.012) ** 2) - ((v - 0.3) / 0.016) ** 2)
        light += 1.5 * head[..., None] * warm
    return light


# ----------------------------------------------------------------------------- sampling


def sample_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    duration_s: float,
    night_fraction: float,
    max_objects: int,
    street_seed: int | None = None,
) -> Scene:
    """A random scene: day or night, and 0..max_objects objects in plain view for the whole sequence.

    Every object stays wholly inside the image from the first frame to the
    last and never has more than MAX_HIDDEN_FRACTION of it hidden behind
    another one, so each window's ground truth is unambiguous: what a window
    shows is what its answers say. At most one object moves in depth
    (approaching or receding). Objects are placed one by one on random paths;
    one that finds no clear path in PLACEMENT_ATTEMPTS tries is left out. The
    street comes from ``street_seed`` when given, else from ``rng``.
    """
    night = bool(rng.random() < night_fraction)
    street_rng = rng if street_seed is None else np.random.default_rng(street_seed)
    background = render_background(street_rng, width, height, night)
    n_objects = _sample_object_count(rng, max_objects)
    categories = _distinct_choices(rng, CATEGORIES, n_objects)
    colors = _distinct_choices(rng, tuple(COLORS), n_objects)
    free_lanes = list(range(len(LANES)))
    objects: list[SceneObject] = []
    for category, color in zip(categories, colors):
        for _ in range(PLACEMENT_ATTEMPTS):
            lanes = list(free_lanes)
            depth_taken = any(o.direction in DEPTH_DIRECTIONS for o in objects)
            directions = [d for d in DIRECTIONS if not (depth_taken and d in DEPTH_DIRECTIONS)]
            direction = str(rng.choice(directions))
            candidate = _sample_object(
                rng, len(objects), category, color, direction, width, height, night, lanes, duration_s
            )
            if _in_plain_view([*objects, candidate], width, height, duration_s):
                objects.append(candidate)
                free_lanes = lanes
                break
    return Scene(width, height, "night" if night else "day", background, tuple(objects))


def _in_plain_view(objects: list[SceneObject], width: int, height: int, duration_s: float) -> bool:
    return all(
        max(hidden_fractions(objects, t, width, height)) <= MAX_HIDDEN_FRACTION
        for t in np.linspace(0.0, duration_s, OCCLUSION_CHECKS)
    )


def _sample_object_count(rng: np.random.Generator, max_objects: int) -> int:
    """Sometimes zero; otherwise 1..max_objects with probability proportional to the count (busy roads)."""
    if max_objects <= 0 or rng.random() < EMPTY_SCENE_PROBABILITY:
        return 0
    counts = np.arange(1, max_objects + 1)
    return int(rng.choice(counts, p=counts / counts.sum()))


def _distinct_choices(rng: np.random.Generator, options: tuple[str, ...], n: int) -> list[str]:
    """n options, all different while there are enough, so questions about "the car" are unambiguous."""
    chosen: list[str] = []
    while len(chosen) < n:
        chosen.extend(str(o) for o in rng.permutation(options)[: n - len(chosen)])
    return chosen


def _sample_object(
    rng: np.random.Generator,
    obj_id: int,
    category: str,
    color: str,
    direction: str,
    width: int,
    height: int,
    night: bool,
    free_lanes: list[int],
    duration_s: float,
) -> SceneObject:
    """An object moving at a random speed along a path that stays inside the image for ``duration_s``."""
    speed = str(rng.choice(SPEEDS))
    view = {"approaching": "front", "receding": "back"}.get(direction, "side")
    sprite = make_sprite(category, color, night, view)
    unit_px = OBJECT_SCALE * height / REFERENCE_HEIGHT_PX
    if direction in ("left", "right"):
        lane = _take_lane(rng, free_lanes)
        bottom, scale = LANES[lane][0] * height, LANES[lane][1]
        half = sprite.width_units * unit_px * scale / 2
        travel = min(HORIZONTAL_SPEED[speed] * width * duration_s, max(width - 2 * half, 0.0))
        first = rng.uniform(half, max(width - half - travel, half))
        start = Placement(first, bottom, unit_px * scale)
        end = Placement(first + travel, bottom, unit_px * scale)
        if direction == "left":
            start, end, sprite = end, start, sprite.flipped()
    else:
        growth = min(DEPTH_GROWTH_PER_S[speed] ** duration_s, NEAR_SCALE / FAR_SCALE)
        far_scale = rng.uniform(FAR_SCALE, NEAR_SCALE / growth)
        near_scale = far_scale * growth
        drift = rng.uniform(-0.08, 0.08) * width
        margin = sprite.width_units * unit_px * near_scale / 2 + abs(drift)
        center = rng.uniform(margin, width - margin) if 2 * margin < width else width / 2
        far = Placement(center, (GROUND_HORIZON + GROUND_SLOPE * far_scale) * height, unit_px * far_scale)
        near = Placement(center + drift, (GROUND_HORIZON + GROUND_SLOPE * near_scale) * height, unit_px * near_scale)
        start, end = (far, near) if direction == "approaching" else (near, far)
    return SceneObject(obj_id, category, color, direction, speed, 0.0, float(duration_s), start, end, sprite)


def _take_lane(rng: np.random.Generator, free_lanes: list[int]) -> int:
    """A lane not used by another horizontal mover, if one is left (removing it from ``free_lanes``)."""
    if not free_lanes:
        return int(rng.integers(len(LANES)))
    return free_lanes.pop(int(rng.integers(len(free_lanes))))
