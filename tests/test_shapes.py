"""Shapes world: scenes, rendering, captions, prompts, the GenEval-style set."""

import re

import numpy as np
import pytest

from unimodal.data import (
    CATEGORIES,
    COLORS,
    PALETTE,
    SHAPES,
    caption,
    check,
    geneval_prompts,
    heldout_specs,
    render,
    render_array,
    sample_prompt,
    sample_scene,
    supported_categories,
)
from unimodal.data.shapes import BORDER, MARGIN, fits

_C, _S = "|".join(COLORS), "|".join(SHAPES)
GRAMMAR = {
    "single_object": rf"an? ({_S})",
    "colors": rf"an? ({_C}) ({_S})",
    "two_object": rf"an? ({_S}) and an? ({_S})",
    "counting": rf"(two|three|four) ({_S})s",
    "position": rf"an? ({_S}) (left of|right of|above|below) an? ({_S})",
    "color_attr": rf"an? ({_C}) ({_S}) and an? ({_C}) ({_S})",
}


def test_scenes_are_deterministic_inside_and_apart():
    a = [sample_scene(np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]
    assert sample_scene(np.random.default_rng(8)) != a[0]
    rng = np.random.default_rng(0)
    for _ in range(300):
        objs = sample_scene(rng).objects
        assert 1 <= len(objs) <= 4
        for i, o in enumerate(objs):
            assert fits(o, objs[:i] + objs[i + 1 :])
            x0, y0, x1, y1 = o.bbox
            assert BORDER - 1e-9 <= x0 and x1 <= 1 - BORDER + 1e-9
            for p in objs[i + 1 :]:
                gap = max(p.bbox[0] - x1, x0 - p.bbox[2], p.bbox[1] - y1, y0 - p.bbox[3])
                assert gap >= MARGIN - 1e-9


@pytest.mark.parametrize("size", [32, 64, 512])
def test_render_sizes_colours_and_background(size):
    scene = sample_scene(np.random.default_rng(3), 2)
    img = render(scene, size)
    assert img.mode == "RGB" and img.size == (size, size)
    arr = render_array(scene, size)
    assert arr.shape == (size, size, 3) and arr.dtype == np.float32
    assert arr.min() >= 0 and arr.max() <= 1
    assert np.all(arr[0, 0] == 0)  # black corner
    for o in scene.objects:  # the pixel under each centroid has the object's exact colour
        px = arr[int(o.centroid[1] * size), int(o.centroid[0] * size)]
        np.testing.assert_allclose(px * 255, PALETTE[o.color], atol=1)
    # area is right to within anti-aliasing: coverage of the lit pixels
    cover = arr.max(axis=2).sum() / size**2
    assert cover == pytest.approx(sum(o.area for o in scene.objects), rel=0.03)
    assert np.array_equal(np.asarray(img), np.asarray(render(scene, size)))


def test_sample_prompt_grammar_and_truth_for_every_category():
    rng = np.random.default_rng(1)
    for cat in CATEGORIES:
        for _ in range(20):
            text, spec, scene = sample_prompt(rng, cat)
            assert spec.category == cat
            assert re.fullmatch(GRAMMAR[cat], text), text
            assert check(render(scene, 64), spec).ok, (text, scene)
            n = sum(g.count or 1 for g in spec.groups)
            assert len(scene.objects) == n  # exactly the named objects, no distractors
    with pytest.raises(ValueError, match="unknown category"):
        sample_prompt(rng, "texture")


def test_caption_is_truthful_and_in_a_supported_category():
    rng = np.random.default_rng(2)
    seen = set()
    for _ in range(300):
        scene = sample_scene(rng)
        cats = supported_categories(scene)
        if not cats:
            with pytest.raises(ValueError):
                caption(scene, rng)
            continue
        text, spec = caption(scene, rng)
        seen.add(spec.category)
        assert spec.category in cats and re.fullmatch(GRAMMAR[spec.category], text)
        assert check(render(scene, 32), spec).ok, text
    assert seen == set(CATEGORIES)


def test_an_before_vowels():
    rng = np.random.default_rng(0)
    texts = {sample_prompt(rng, "colors")[0] for _ in range(200)}
    assert any(t.startswith("an orange") for t in texts)
    assert not any(re.search(r"\ba [aeiou]", t) for t in texts)


def test_geneval_prompts_cover_categories_and_are_fixed():
    items = geneval_prompts(n_per_category=10, seed=0)
    assert len(items) == 60
    assert [i.category for i in items[::10]] == list(CATEGORIES)
    again = geneval_prompts(n_per_category=10, seed=0)
    assert [(i.text, i.spec, i.scene) for i in items] == [(i.text, i.spec, i.scene) for i in again]
    assert [i.text for i in geneval_prompts(10, seed=1)] != [i.text for i in items]
    for cat in CATEGORIES:
        texts = [i.text for i in items if i.category == cat]
        # distinct while the category has enough held-out prompts (unimodal/data/split.py)
        assert len(set(texts)) == min(10, len(heldout_specs(cat)))
    for it in items:
        assert it.spec.category == it.category
        assert check(render(it.scene, 32), it.spec).ok
