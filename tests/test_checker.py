"""Checker: agreement with ground truth on clean, blurred and noisy renders; hostile inputs."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from unimodal.data import (
    CATEGORIES,
    COLORS,
    RELATIONS,
    SHAPES,
    Group,
    Spec,
    check,
    check_scene,
    detect,
    render,
    render_array,
    sample_prompt,
    sample_scene,
    to_pixels,
)

OPPOSITE = dict(zip(RELATIONS, ("right of", "left of", "below", "above")))


def _degrade(img: Image.Image, how: str, rng: np.random.Generator) -> np.ndarray:
    """clean; blur: Gaussian radius 1 px at 64 px (scaled with size); noise: sigma 0.05."""
    if how == "blur":
        img = img.filter(ImageFilter.GaussianBlur(img.size[0] / 64))
    arr = np.asarray(img, dtype=np.float32) / 255
    if how == "noise":
        arr = np.clip(arr + rng.normal(0, 0.05, arr.shape), 0, 1)
    return arr


def _agreement(size: int, how: str, n: int = 200) -> tuple[float, float]:
    """Fraction of scenes whose detections equal the ground truth (shape, colour) multiset,
    and fraction passing check_scene (positions and sizes too)."""
    rng, noise = np.random.default_rng(size), np.random.default_rng(1)
    same = exact = 0
    for _ in range(n):
        scene = sample_scene(rng)
        img = _degrade(render(scene, size), how, noise)
        got = sorted((d.shape, d.color) for d in detect(img))
        same += got == sorted((o.shape, o.color) for o in scene.objects)
        exact += check_scene(img, scene).ok
    return same / n, exact / n


# Measured (200 scenes each): 1.00 / 1.00 in all six cells; the floors leave room for tuning.
@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("how,floor", [("clean", 0.99), ("blur", 0.95), ("noise", 0.95)])
def test_detection_agreement(size, how, floor):
    same, exact = _agreement(size, how)
    assert same >= floor and exact >= floor, (same, exact)


def _corrupt(spec: Spec, scene, rng) -> Spec:
    """A spec the scene does not satisfy: wrong colour, wrong count, swapped relation, or a
    shape that is absent."""
    g = list(spec.groups)
    present = {o.shape for o in scene.objects}
    if spec.relation is not None:
        return dataclasses.replace(spec, relation=OPPOSITE[spec.relation])
    if spec.category == "counting":
        return Spec((dataclasses.replace(g[0], count=g[0].count + rng.choice([-1, 1])),))
    i = int(rng.integers(len(g)))
    if g[i].color is not None:
        used = {o.color for o in scene.objects if o.shape == g[i].shape}
        g[i] = dataclasses.replace(g[i], color=str(rng.choice(sorted(set(COLORS) - used))))
    else:
        g[i] = dataclasses.replace(g[i], shape=str(rng.choice(sorted(set(SHAPES) - present))))
    return dataclasses.replace(spec, groups=tuple(g))


@pytest.mark.parametrize("size", [32, 64])
def test_check_accepts_true_specs_and_rejects_corrupted_ones(size):
    rng = np.random.default_rng(10 + size)
    ok = rejected = 0
    n = 300
    for i in range(n):
        text, spec, scene = sample_prompt(rng, CATEGORIES[i % len(CATEGORIES)])
        img = render(scene, size)
        ok += check(img, spec).ok
        bad = check(img, _corrupt(spec, scene, rng))
        rejected += not bad.ok
        assert bad.reason != "ok" or bad.ok
    assert ok / n >= 0.99 and rejected / n >= 0.99, (ok / n, rejected / n)


def test_check_reasons_and_exclusive():
    scene = sample_scene(np.random.default_rng(0), 3)
    img = render(scene, 64)
    o = scene.objects[0]
    assert check(img, Spec((Group(o.shape, o.color),))).ok
    assert not check(img, Spec((Group(o.shape, o.color),), exclusive=True)).ok
    r = check(img, Spec((Group("circle", None, 4),)))
    assert not r.ok and "expected 4 circles" in r.reason
    r = check(np.zeros((64, 64, 3)), Spec((Group("square", "red"),)))
    assert not r.ok and r.reason == "no red square found"


def test_accepts_pil_arrays_uint8_and_tensors():
    scene = sample_scene(np.random.default_rng(1))
    img = render(scene, 64)
    ref = detect(img)
    assert detect(np.asarray(img)) == ref  # uint8 HWC
    assert detect(render_array(scene, 64)) == ref  # float HWC in [0, 1]
    assert [(d.shape, d.color) for d in detect(to_pixels(img))] == [
        (d.shape, d.color) for d in ref
    ]  # tensor CHW in [-1, 1]
    assert check_scene(to_pixels(img).to(torch.float16), scene).ok


@pytest.mark.parametrize("size", [32, 64])
def test_heavy_noise_fails_gracefully(size):
    rng = np.random.default_rng(2)
    passed = 0
    for i in range(60):
        _, spec, scene = sample_prompt(rng, CATEGORIES[i % len(CATEGORIES)])
        heavy = render_array(scene, size) + rng.normal(0, 0.5, (size, size, 3))
        pure = rng.normal(0, 0.3, (size, size, 3))
        passed += check(heavy, spec).ok + check(pure, spec).ok
        assert not check_scene(heavy, scene).ok
    assert passed / 120 <= 0.05  # measured 0.0 at 64 px, <= 0.025 at 32 px


def test_hostile_inputs():
    spec = Spec((Group("circle"),))
    assert detect(np.zeros((32, 32, 3))) == []
    assert detect(np.zeros((1, 1, 3))) == []
    white = detect(np.ones((32, 32, 3)))  # one blob covering everything is not an object
    assert len(white) == 1 and white[0].shape == "unknown" and white[0].size == "large"
    assert not check(np.ones((32, 32, 3)), Spec((Group("square"),))).ok
    nan = np.full((32, 32, 3), np.nan)
    assert not check(nan, spec).ok
    assert not check(np.zeros((32, 32, 4)), spec).ok  # wrong channels: False, not an exception
    assert "unreadable" in check(np.zeros((5,)), spec).reason
    with pytest.raises(ValueError, match="RGB"):
        detect(np.zeros((8, 8, 2)))
    gray = (render_array(sample_scene(np.random.default_rng(0), 1), 32).max(axis=2) * 255).astype(
        np.uint8
    )
    assert len(detect(gray)) == 1  # 2-D input is read as grey
    assert not check_scene(np.zeros((32, 32, 3)), sample_scene(np.random.default_rng(0), 1)).ok
