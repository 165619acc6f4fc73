"""The held-out split of the shapes world's prompt specs: evaluation prompts training never sees.

Per category, a seeded share of the specs is held out, chosen so that the training specs still
cover every attribute value the category uses (each shape, colour, count and relation, and each
shape in each slot). `single_object` has only three specs, one per shape, so none can go with
its shape still covered inside the category: one spec is held out anyway ("a triangle" or
another, by seed), its shape being trained in the other templates ("a red triangle", "two
triangles"); its 32 evaluation images share that one prompt. Training data (generator
captions, stage-0 captions, the tokenizer's corpus) draws only training specs; GenEval-shapes
draws only held-out ones.
"""

from __future__ import annotations

from collections import Counter
from functools import cache

import numpy as np

from .captions import (
    CATEGORIES,
    PromptItem,
    Spec,
    all_specs,
    random_spec,
    scene_caption_spec,
    scene_for_spec,
    spec_text,
    supported_categories,
)
from .shapes import Scene

HELDOUT_FRACTION = 0.25
SPLIT_SEED = 20261202


def _features(spec: Spec) -> set[tuple]:
    """The attribute values a spec uses, slot by slot (what training must keep covering)."""
    out: set[tuple] = set()
    for i, g in enumerate(spec.groups):
        out |= {("shape", i, g.shape), ("color", i, g.color), ("count", g.count)}
    out.add(("relation", spec.relation))
    return out


@cache
def heldout_specs(category: str) -> frozenset[Spec]:
    """The specs of `category` reserved for evaluation (fixed by `SPLIT_SEED`)."""
    specs = all_specs(category)
    rng = np.random.default_rng([SPLIT_SEED, CATEGORIES.index(category)])
    target = max(1, round(HELDOUT_FRACTION * len(specs)))
    uses = Counter(f for s in specs for f in _features(s))  # training specs using each value
    held: set[Spec] = set()
    for i in rng.permutation(len(specs)):
        if len(held) == target:
            break
        if all(uses[f] > 1 for f in _features(specs[i])):  # every value stays covered
            held.add(specs[i])
            uses.subtract(_features(specs[i]))
    if not held:  # single_object: covered by the other categories (module docstring)
        held = {specs[int(rng.integers(len(specs)))]}
    return frozenset(held)


def train_specs(category: str) -> list[Spec]:
    """The specs of `category` training may use."""
    held = heldout_specs(category)
    return [s for s in all_specs(category) if s not in held]


def is_heldout(spec: Spec) -> bool:
    return spec in heldout_specs(spec.category)


TRAIN_CATEGORIES: tuple[str, ...] = CATEGORIES  # every category keeps training specs


def sample_train_prompt(rng: np.random.Generator, category: str) -> tuple[str, Spec, Scene]:
    """A random training prompt of `category` (never a held-out spec), its spec and a scene."""
    while True:
        spec = random_spec(rng, category)
        if not is_heldout(spec):
            return spec_text(spec), spec, scene_for_spec(spec, rng)


def train_caption(scene: Scene, rng: np.random.Generator) -> tuple[str, Spec]:
    """A truthful caption of `scene` whose spec is a training spec (ValueError when none is)."""
    cats = supported_categories(scene)
    for i in rng.permutation(len(cats)):
        spec = scene_caption_spec(scene, cats[i])
        if not is_heldout(spec):
            return spec_text(spec), spec
    raise ValueError("no training-split caption describes this scene")


def geneval_prompts(n_per_category: int = 32, seed: int = 0) -> list[PromptItem]:
    """The evaluation set: `n_per_category` held-out prompts in each of the six categories,
    distinct within a category as far as its held-out specs allow (then cycled, with new
    scenes), in a seeded order."""
    items = []
    for ci, cat in enumerate(CATEGORIES):
        rng = np.random.default_rng([seed, ci, 7])
        specs = sorted(heldout_specs(cat), key=spec_text)
        order = rng.permutation(len(specs))
        for i in range(n_per_category):
            spec = specs[order[i % len(specs)]]
            items.append(PromptItem(spec_text(spec), spec, cat, scene_for_spec(spec, rng)))
    return items
