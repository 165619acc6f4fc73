"""Compositional captions and prompts for the shapes world, in GenEval's six categories.

The grammar is small and regular so a small language backbone can learn it:

    single_object  "a circle"                      colors      "a red circle"
    two_object     "a circle and a square"         counting    "three triangles"
    position       "a circle left of a square"     color_attr  "a red circle and a blue square"

Each text comes with a ``Spec`` that ``checker.check`` can verify. A group's count of None means
"at least one"; an exact count means exactly that many. Scenes made for a prompt contain exactly
the objects it names; unnamed attributes (colour, size, position) are random.
Left out: GenEval's object classes and the "a photo of" template.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .shapes import COLORS, SHAPES, Scene, place_all, sample_size

CATEGORIES: tuple[str, ...] = (
    "single_object",
    "two_object",
    "counting",
    "colors",
    "position",
    "color_attr",
)
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
NUMBERS: dict[int, str] = {1: "one", 2: "two", 3: "three", 4: "four"}
COUNTS: tuple[int, ...] = (2, 3, 4)  # counting prompts
POS_MIN = 0.2  # a position scene's offset along the named axis, fraction of the image side


@dataclass(frozen=True)
class Group:
    """Objects with this shape and colour (None: any); count None means at least one."""

    shape: str | None = None
    color: str | None = None
    count: int | None = None

    def phrase(self) -> str:
        """Noun phrase, e.g. "red circle", "object", "squares" when count > 1."""
        noun = self.shape or "object"
        if self.count is not None and self.count != 1:
            noun += "s"
        return f"{self.color} {noun}" if self.color else noun


@dataclass(frozen=True)
class Spec:
    """What an image must show: groups, an optional relation of group 0 to group 1."""

    groups: tuple[Group, ...]
    relation: str | None = None
    category: str = ""
    exclusive: bool = False  # no objects beyond the groups


@dataclass(frozen=True)
class PromptItem:
    """One evaluation prompt with a reference scene that satisfies it."""

    text: str
    spec: Spec
    category: str
    scene: Scene


def with_article(word: str) -> str:
    """The word with its indefinite article ("a" or, before a vowel, "an")."""
    return ("an " if word[0] in "aeiou" else "a ") + word


def spec_text(spec: Spec) -> str:
    """The caption for a spec made by this module (inverse of the grammar above)."""
    g = spec.groups
    if spec.category == "counting":
        return f"{NUMBERS[g[0].count]} {g[0].phrase()}"
    if spec.category == "position":
        return f"{with_article(g[0].phrase())} {spec.relation} {with_article(g[1].phrase())}"
    return " and ".join(with_article(x.phrase()) for x in g)


def supported_categories(scene: Scene) -> list[str]:
    """Categories in which ``scene`` can be described completely and truthfully."""
    objs = scene.objects
    cats = []
    if len(objs) == 1:
        cats += ["single_object", "colors"]
    if len(objs) == 2:
        a, b = objs
        if a.shape != b.shape:
            cats += ["two_object"]
            if _relations(scene):
                cats += ["position"]
        if (a.shape, a.color) != (b.shape, b.color):
            cats += ["color_attr"]
    if len(objs) in COUNTS and len({o.shape for o in objs}) == 1:
        cats += ["counting"]
    return [c for c in CATEGORIES if c in cats]


def _relations(scene: Scene) -> list[str]:
    """Relations of object 0 to object 1 that hold clearly (dominant axis, offset >= POS_MIN)."""
    (ax, ay), (bx, by) = (o.centroid for o in scene.objects)
    dx, dy = bx - ax, by - ay
    if abs(dx) >= abs(dy) and abs(dx) >= POS_MIN:
        return ["left of" if dx > 0 else "right of"]
    if abs(dy) > abs(dx) and abs(dy) >= POS_MIN:
        return ["above" if dy > 0 else "below"]
    return []


def scene_caption_spec(scene: Scene, category: str) -> Spec:
    """The spec describing ``scene`` in ``category`` (must be supported)."""
    objs = scene.objects
    if category == "single_object":
        return Spec((Group(objs[0].shape),), category=category)
    if category == "colors":
        return Spec((Group(objs[0].shape, objs[0].color),), category=category)
    if category == "two_object":
        return Spec(tuple(Group(o.shape) for o in objs), category=category)
    if category == "color_attr":
        return Spec(tuple(Group(o.shape, o.color) for o in objs), category=category)
    if category == "counting":
        return Spec((Group(objs[0].shape, None, len(objs)),), category=category)
    if category == "position":
        groups = tuple(Group(o.shape) for o in objs)
        return Spec(groups, _relations(scene)[0], category=category)
    raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")


def caption(scene: Scene, rng: np.random.Generator) -> tuple[str, Spec]:
    """A truthful caption of ``scene`` in a random supported category."""
    cats = supported_categories(scene)
    if not cats:
        raise ValueError(f"no caption category describes a scene of {len(scene.objects)} objects")
    spec = scene_caption_spec(scene, str(rng.choice(cats)))
    return spec_text(spec), spec


def random_spec(rng: np.random.Generator, category: str) -> Spec:
    """A random spec in ``category``."""
    shape = lambda: str(rng.choice(SHAPES))  # noqa: E731
    color = lambda: str(rng.choice(COLORS))  # noqa: E731
    if category == "single_object":
        return Spec((Group(shape()),), category=category)
    if category == "colors":
        return Spec((Group(shape(), color()),), category=category)
    if category == "counting":
        return Spec((Group(shape(), None, int(rng.choice(COUNTS))),), category=category)
    if category in ("two_object", "position"):
        a, b = rng.choice(SHAPES, size=2, replace=False)
        rel = str(rng.choice(RELATIONS)) if category == "position" else None
        return Spec((Group(str(a)), Group(str(b))), rel, category=category)
    if category == "color_attr":
        while True:
            g = (Group(shape(), color()), Group(shape(), color()))
            if g[0] != g[1]:
                return Spec(g, category=category)
    raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")


def scene_for_spec(spec: Spec, rng: np.random.Generator) -> Scene:
    """A scene with exactly the objects ``spec`` names (count None -> one object each)."""
    attrs = []
    for g in spec.groups:
        for _ in range(g.count or 1):
            attrs.append((g.shape or str(rng.choice(SHAPES)), g.color or str(rng.choice(COLORS))))
    n = len(attrs)
    sized = [(s, c, sample_size(rng, n)) for s, c in attrs]
    for _ in range(200):
        scene = place_all(rng, sized)
        if spec.relation is None or _relations(scene) == [spec.relation]:
            return scene
    raise RuntimeError(f"cannot lay out a scene for {spec}")


def sample_prompt(rng: np.random.Generator, category: str) -> tuple[str, Spec, Scene]:
    """A random prompt in ``category``, its spec, and a scene that satisfies it."""
    spec = random_spec(rng, category)
    return spec_text(spec), spec, scene_for_spec(spec, rng)


def all_specs(category: str) -> list[Spec]:
    """Every distinct spec of ``category``, in a fixed order."""
    c = category
    pairs = list(itertools.permutations(SHAPES, 2))
    if c == "single_object":
        return [Spec((Group(s),), category=c) for s in SHAPES]
    if c == "colors":
        return [Spec((Group(s, k),), category=c) for s in SHAPES for k in COLORS]
    if c == "counting":
        return [Spec((Group(s, None, n),), category=c) for s in SHAPES for n in COUNTS]
    if c == "two_object":
        return [Spec((Group(a), Group(b)), category=c) for a, b in pairs]
    if c == "position":
        return [Spec((Group(a), Group(b)), r, category=c) for a, b in pairs for r in RELATIONS]
    if c == "color_attr":
        groups = [Group(s, k) for s in SHAPES for k in COLORS]
        return [Spec((a, b), category=c) for a, b in itertools.permutations(groups, 2)]
    raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
