"""The checker's strict setting: ground-truth renders still pass, off-palette colours and
implausible shapes that the default setting accepts do not; the default is unchanged."""

import numpy as np
import pytest

from tests.test_checker import _degrade
from unimodal.data import Group, Obj, Scene, Spec, check, detect, render, sample_scene
from unimodal.data.checker import DEFAULT, STRICT, Tolerances


# Measured (200 scenes each): 1.00 in all six cells, as the default setting.
@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("how", ["clean", "blur", "noise"])
def test_strict_setting_passes_ground_truth_renders(size, how):
    rng, noise = np.random.default_rng(size + 7), np.random.default_rng(2)
    same = 0
    for _ in range(200):
        scene = sample_scene(rng)
        img = _degrade(render(scene, size), how, noise)
        got = sorted((d.shape, d.color) for d in detect(img, STRICT))
        same += got == sorted((o.shape, o.color) for o in scene.objects)
    assert same / 200 >= 0.99


def _one(shape: str, color: str) -> np.ndarray:
    scene = Scene((Obj(shape, color, "large", 0.5, 0.5),))
    return np.asarray(render(scene, 64), dtype=np.float32) / 255


def test_off_palette_colour_fails_only_the_strict_setting():
    img = _one("circle", "red")
    on = img.max(axis=2) > 0.3
    img[on] = np.array([1.0, 45 / 255, 0.0]) * img[on].max(axis=1, keepdims=True)  # red-orange
    spec = Spec((Group("circle", "red"),), category="colors")
    assert check(img, spec).ok
    assert not check(img, spec, STRICT).ok
    assert detect(img)[0].chroma_err == pytest.approx(45 / 255, abs=0.02)


def test_upside_down_triangle_fails_only_the_strict_setting():
    img = _one("triangle", "green")[::-1].copy()  # a triangle standing on its tip
    spec = Spec((Group("triangle"),), category="single_object")
    assert check(img, spec).ok
    assert not check(img, spec, STRICT).ok
    assert check(_one("triangle", "green"), spec, STRICT).ok


def test_default_tolerances_are_the_module_constants():
    from unimodal.data import checker

    assert DEFAULT == Tolerances()
    assert (DEFAULT.min_purity, DEFAULT.triangle_skew, DEFAULT.square_fill) == (
        checker.MIN_PURITY,
        checker.TRIANGLE_SKEW,
        checker.SQUARE_FILL,
    )
    assert (DEFAULT.min_circle_fill, DEFAULT.max_circle_fill) == (
        checker.MIN_CIRCLE_FILL,
        checker.SQUARE_FILL,
    )
    img = _one("square", "blue")
    assert detect(img) == detect(img, DEFAULT)
