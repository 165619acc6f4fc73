"""The shapes world: seeded scenes of flat coloured shapes on black, rendered at any size.

A scene is a handful of filled, axis-aligned shapes (circle, square, upright triangle), each
with one of eight saturated colours and one of three sizes, placed inside the image without
overlapping (bounding boxes kept apart by a margin). Every shape fits an ``s x s`` box, where
``s`` is its size as a fraction of the image side, so placement ignores the shape. Rendering
draws at 4x with PIL and downsamples with a box filter (exact area anti-aliasing).

Coordinates are normalised: x runs left to right, y top to bottom, both in [0, 1].
Deliberately left out: rotation, occlusion, textures, backgrounds other than black.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "orange": (255, 128, 0),
    "yellow": (255, 255, 0),
    "green": (0, 255, 0),
    "cyan": (0, 255, 255),
    "blue": (0, 0, 255),
    "magenta": (255, 0, 255),
    "white": (255, 255, 255),
}
COLORS: tuple[str, ...] = tuple(PALETTE)
SIZES: dict[str, float] = {"small": 0.25, "medium": 0.33, "large": 0.42}
SIZE_NAMES: tuple[str, ...] = tuple(SIZES)
# Area of each shape relative to its s x s bounding box.
FILL: dict[str, float] = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}
MARGIN = 0.08  # minimum gap between bounding boxes (fraction of the image side)
BORDER = 0.03  # minimum gap between a bounding box and the image edge
MAX_OBJECTS = 4
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Obj:
    """One shape: kind, colour name, size name and normalised centre of its bounding box."""

    shape: str
    color: str
    size: str
    cx: float
    cy: float

    @property
    def extent(self) -> float:
        """Side of the bounding box as a fraction of the image side."""
        return SIZES[self.size]

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """Normalised (x0, y0, x1, y1)."""
        h = self.extent / 2
        return (self.cx - h, self.cy - h, self.cx + h, self.cy + h)

    @property
    def centroid(self) -> tuple[float, float]:
        """Centre of mass (a triangle's lies a sixth of its height below the box centre)."""
        dy = self.extent / 6 if self.shape == "triangle" else 0.0
        return (self.cx, self.cy + dy)

    @property
    def area(self) -> float:
        """Area as a fraction of the image area."""
        return FILL[self.shape] * self.extent**2


@dataclass(frozen=True)
class Scene:
    """An ordered tuple of objects on a black background."""

    objects: tuple[Obj, ...]

    def count(self, shape: str | None = None, color: str | None = None) -> int:
        """Number of objects matching ``shape`` and ``color`` (None matches anything)."""
        return sum(1 for o in self.objects if _matches(o, shape, color))

    def replace(self, i: int, obj: Obj | None) -> Scene:
        """A copy with object ``i`` replaced (or removed when ``obj`` is None)."""
        objs = list(self.objects)
        if obj is None:
            del objs[i]
        else:
            objs[i] = obj
        return Scene(tuple(objs))


def _matches(o: Obj, shape: str | None, color: str | None) -> bool:
    return (shape is None or o.shape == shape) and (color is None or o.color == color)


def fits(obj: Obj, others: tuple[Obj, ...] | list[Obj] = ()) -> bool:
    """True if ``obj`` lies inside the image border and keeps MARGIN from every other box."""
    x0, y0, x1, y1 = obj.bbox
    eps = 1e-9
    if min(x0, y0) < BORDER - eps or max(x1, y1) > 1 - BORDER + eps:
        return False
    for o in others:
        a0, b0, a1, b1 = o.bbox
        gap = max(a0 - x1, x0 - a1, b0 - y1, y0 - b1)
        if gap < MARGIN - eps:
            return False
    return True


def place(
    rng: np.random.Generator, shape: str, color: str, size: str, others: list[Obj] | tuple = ()
) -> Obj | None:
    """A uniformly placed object that ``fits`` among ``others``; None after 100 failed tries."""
    lo = BORDER + SIZES[size] / 2
    for _ in range(100):
        cx, cy = rng.uniform(lo, 1 - lo, size=2)
        obj = Obj(shape, color, size, float(cx), float(cy))
        if fits(obj, others):
            return obj
    return None


def place_all(rng: np.random.Generator, attrs: list[tuple[str, str, str]]) -> Scene:
    """Place objects with the given (shape, color, size) in order, shrinking sizes if crowded.

    Retries whole layouts; after repeated failures every object drops one size class.
    """
    attrs = list(attrs)
    for attempt in range(60):
        if attempt and attempt % 20 == 0:
            attrs = [(s, c, SIZE_NAMES[max(SIZE_NAMES.index(z) - 1, 0)]) for s, c, z in attrs]
        objs: list[Obj] = []
        for shape, color, size in attrs:
            o = place(rng, shape, color, size, objs)
            if o is None:
                break
            objs.append(o)
        else:
            return Scene(tuple(objs))
    raise RuntimeError(f"cannot place {len(attrs)} objects without overlap")


def sample_size(rng: np.random.Generator, n_objects: int) -> str:
    """A size class; crowded scenes favour smaller objects."""
    probs = {1: [0.3, 0.35, 0.35], 2: [0.35, 0.4, 0.25], 3: [0.5, 0.4, 0.1]}
    return str(rng.choice(SIZE_NAMES, p=probs.get(n_objects, [0.7, 0.3, 0.0])))


def sample_scene(rng: np.random.Generator, n_objects: int | None = None) -> Scene:
    """A random scene with ``n_objects`` (default uniform 1..MAX_OBJECTS) random objects."""
    n = int(rng.integers(1, MAX_OBJECTS + 1)) if n_objects is None else n_objects
    attrs = [
        (str(rng.choice(SHAPES)), str(rng.choice(COLORS)), sample_size(rng, n)) for _ in range(n)
    ]
    return place_all(rng, attrs)


def moved(obj: Obj, dx: float, dy: float) -> Obj:
    """``obj`` shifted by (dx, dy)."""
    return replace(obj, cx=obj.cx + dx, cy=obj.cy + dy)


def render(scene: Scene, size: int) -> Image.Image:
    """Render ``scene`` as a ``size x size`` RGB image (4x supersampled, box-filtered)."""
    big = size * SUPERSAMPLE
    img = Image.new("RGB", (big, big), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        x0, y0, x1, y1 = (v * big for v in o.bbox)
        fill = PALETTE[o.color]
        if o.shape == "circle":
            draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=fill)
        elif o.shape == "square":
            draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=fill)
        elif o.shape == "triangle":
            draw.polygon([(o.cx * big, y0), (x1, y1), (x0, y1)], fill=fill)
        else:
            raise ValueError(f"unknown shape {o.shape!r}")
    return img.resize((size, size), Image.Resampling.BOX)


def render_array(scene: Scene, size: int) -> np.ndarray:
    """Render as a float32 array of shape (size, size, 3) in [0, 1]."""
    return np.asarray(render(scene, size), dtype=np.float32) / 255.0
