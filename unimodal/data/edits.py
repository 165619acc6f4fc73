"""Edit pairs for the shapes world: source scene, instruction, target scene.

Five kinds, each changing one object and nothing else:

    recolour  "make the circle blue"          add     "add a green square"
    remove    "remove the red triangle"       move    "move the square to the left"
    resize    "make the circle bigger"

Objects are named by the shortest unique phrase (shape, else colour + shape). ``region`` is a
normalised (x0, y0, x1, y1) box covering every pixel that changed. ``scene_spec(target)`` and
``checker.check_scene(image, target)`` judge edit success.
Left out: multi-object edits, style or background edits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .captions import Group, Spec, with_article
from .shapes import (
    COLORS,
    MAX_OBJECTS,
    SHAPES,
    SIZE_NAMES,
    Obj,
    Scene,
    fits,
    moved,
    place,
    sample_scene,
    sample_size,
)
from .vqa import unique_name

EDIT_KINDS: tuple[str, ...] = ("recolour", "add", "remove", "move", "resize")
MOVE_STEP = 0.25  # fraction of the image side
REGION_PAD = 0.01
_DIRECTIONS = {
    "to the left": (-1, 0),
    "to the right": (1, 0),
    "up": (0, -1),
    "down": (0, 1),
}

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class EditPair:
    """Source scene, instruction, target scene, edit kind, normalised box of changed pixels."""

    source: Scene
    instruction: str
    target: Scene
    kind: str
    region: Box


def scene_spec(scene: Scene) -> Spec:
    """A spec demanding exactly the objects of ``scene`` (shape, colour, count; no others).
    Positions and sizes are checked by ``checker.check_scene``."""
    counts: dict[tuple[str, str], int] = {}
    for o in scene.objects:
        counts[(o.shape, o.color)] = counts.get((o.shape, o.color), 0) + 1
    groups = tuple(Group(s, c, n) for (s, c), n in sorted(counts.items()))
    return Spec(groups, category="scene", exclusive=True)


def _named(rng: np.random.Generator, scene: Scene) -> tuple[int, str] | None:
    """A random object of ``scene`` with a unique name, as (index, name)."""
    options = [(i, n) for i, o in enumerate(scene.objects) if (n := unique_name(scene, o))]
    return options[int(rng.integers(len(options)))] if options else None


def _others(scene: Scene, i: int) -> list[Obj]:
    return [o for j, o in enumerate(scene.objects) if j != i]


def _recolour(rng, src):
    if (pick := _named(rng, src)) is None:
        return None
    i, name = pick
    o = src.objects[i]
    new = str(rng.choice([c for c in COLORS if c != o.color]))
    return f"make the {name} {new}", src.replace(i, replace(o, color=new)), [o.bbox]


def _add(rng, src):
    n = len(src.objects) + 1
    shape, color = str(rng.choice(SHAPES)), str(rng.choice(COLORS))
    o = place(rng, shape, color, sample_size(rng, n), src.objects)
    if o is None:
        return None
    return f"add {with_article(f'{color} {shape}')}", Scene(src.objects + (o,)), [o.bbox]


def _remove(rng, src):
    if (pick := _named(rng, src)) is None:
        return None
    i, name = pick
    return f"remove the {name}", src.replace(i, None), [src.objects[i].bbox]


def _move(rng, src):
    if (pick := _named(rng, src)) is None:
        return None
    i, name = pick
    o = src.objects[i]
    for d in rng.permutation(list(_DIRECTIONS)):
        dx, dy = _DIRECTIONS[str(d)]
        new = moved(o, dx * MOVE_STEP, dy * MOVE_STEP)
        if fits(new, _others(src, i)):
            return f"move the {name} {d}", src.replace(i, new), [o.bbox, new.bbox]
    return None


def _resize(rng, src):
    if (pick := _named(rng, src)) is None:
        return None
    i, name = pick
    o = src.objects[i]
    for step in rng.permutation([-1, 1]):
        k = SIZE_NAMES.index(o.size) + int(step)
        if not 0 <= k < len(SIZE_NAMES):
            continue
        new = replace(o, size=SIZE_NAMES[k])
        if fits(new, _others(src, i)):
            word = "bigger" if step > 0 else "smaller"
            return f"make the {name} {word}", src.replace(i, new), [o.bbox, new.bbox]
    return None


_EDITS = {"recolour": _recolour, "add": _add, "remove": _remove, "move": _move, "resize": _resize}


def _region(boxes: list[Box]) -> Box:
    x0, y0 = min(b[0] for b in boxes) - REGION_PAD, min(b[1] for b in boxes) - REGION_PAD
    x1, y1 = max(b[2] for b in boxes) + REGION_PAD, max(b[3] for b in boxes) + REGION_PAD
    return (max(x0, 0.0), max(y0, 0.0), min(x1, 1.0), min(y1, 1.0))


def edit_pair(rng: np.random.Generator, kind: str | None = None) -> EditPair:
    """A random edit of ``kind`` (random if None) applied to a random source scene."""
    kind = kind or str(rng.choice(EDIT_KINDS))
    if kind not in _EDITS:
        raise ValueError(f"unknown edit kind {kind!r}; expected one of {EDIT_KINDS}")
    lo = 0 if kind == "add" else 1
    hi = MAX_OBJECTS - 1 if kind == "add" else MAX_OBJECTS
    for _ in range(1000):
        src = sample_scene(rng, int(rng.integers(lo, hi + 1)))
        result = _EDITS[kind](rng, src)
        if result is not None:
            text, tgt, boxes = result
            return EditPair(src, text, tgt, kind, _region(boxes))
    raise RuntimeError(f"could not make a {kind} edit")


def edit_sample(seed: int, index: int, kinds: tuple[str, ...] = EDIT_KINDS) -> EditPair:
    """The ``index``-th edit pair of stream ``seed``; kinds cycle for balance."""
    rng = np.random.default_rng([seed, index, 3])
    return edit_pair(rng, kinds[index % len(kinds)])
