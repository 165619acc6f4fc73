"""Shapes world: VQA pairs (checked against the image) and edit pairs (checked object by object)."""

import collections

import numpy as np
import pytest

from unimodal.data import (
    ANSWERS,
    EDIT_KINDS,
    QTYPES,
    chance_level,
    check,
    check_scene,
    detect,
    edit_pair,
    edit_sample,
    questions,
    render,
    render_array,
    sample_scene,
    scene_spec,
    vqa_sample,
)
from unimodal.data.edits import MOVE_STEP
from unimodal.data.shapes import SIZE_NAMES


def _answer_from_image(qa, image) -> str:
    """Answer a question by reading the image with the checker (an independent path)."""
    dets = detect(image)
    q = qa.question.rstrip("?").split()

    def find(words):
        shape = words[-1]
        color = words[-2] if len(words) == 2 else None
        hits = [d for d in dets if d.shape == shape and (color is None or d.color == color)]
        assert len(hits) == 1, (qa, hits)
        return hits[0]

    if qa.qtype == "color":  # What colour is the <shape>
        return find(q[4:]).color
    if qa.qtype == "shape":  # What shape is the <color> object
        return next(d.shape for d in dets if d.color == q[4])
    if qa.qtype == "count":  # How many <shape>s are there
        noun = q[2][:-1]
        return str(len(dets) if noun == "object" else sum(d.shape == noun for d in dets))
    # Is the <a> left or right of the <b> / Is the <a> above or below the <b>
    mid = q.index("or")
    a = find(q[2 : mid - 1])
    b = find(q[q.index("the", mid) + 1 :])
    if q[mid - 1] == "left":
        return "left" if a.cx < b.cx else "right"
    return "above" if a.cy < b.cy else "below"


def test_vqa_answers_agree_with_the_image():
    counts = collections.Counter()
    for i in range(240):
        scene, qa = vqa_sample(0, i)
        assert qa.qtype == QTYPES[i % 4] and qa.answer in ANSWERS[qa.qtype]
        assert _answer_from_image(qa, render(scene, 64)) == qa.answer, qa
        counts[qa.qtype, qa.answer] += 1
    for qtype in QTYPES:  # answers are spread, not one constant
        assert len([a for (t, a) in counts if t == qtype]) >= 3
    assert vqa_sample(0, 5) == vqa_sample(0, 5) and vqa_sample(1, 5) != vqa_sample(0, 5)
    assert chance_level("color") == 1 / 8 and chance_level("position") == 0.5


def test_only_unambiguous_questions():
    rng = np.random.default_rng(4)
    for _ in range(200):
        scene = sample_scene(rng)
        for qa in questions(scene, "color"):
            assert scene.count(shape=qa.question.split()[-1][:-1]) == 1
        for qa in questions(scene, "shape"):
            assert scene.count(color=qa.question.split()[4]) == 1
    with pytest.raises(ValueError, match="unknown qtype"):
        questions(scene, "size")


def _diff(a, b):
    """Objects only in a, only in b."""
    return [o for o in a.objects if o not in b.objects], [
        o for o in b.objects if o not in a.objects
    ]


@pytest.mark.parametrize("kind", EDIT_KINDS)
def test_edit_changes_only_what_the_kind_says(kind):
    rng = np.random.default_rng(EDIT_KINDS.index(kind))
    for _ in range(40):
        e = edit_pair(rng, kind)
        assert e.kind == kind
        gone, new = _diff(e.source, e.target)
        if kind == "add":
            assert gone == [] and len(new) == 1
            assert e.instruction.endswith(f"{new[0].color} {new[0].shape}")
        elif kind == "remove":
            assert new == [] and len(gone) == 1 and e.instruction.startswith("remove the ")
        else:
            assert len(gone) == len(new) == 1
            (o,), (p,) = gone, new
            changed = {
                f for f in ("shape", "color", "size", "cx", "cy") if getattr(o, f) != getattr(p, f)
            }
            if kind == "recolour":
                assert changed == {"color"} and e.instruction.endswith(p.color)
            elif kind == "resize":
                assert changed == {"size"}
                step = SIZE_NAMES.index(p.size) - SIZE_NAMES.index(o.size)
                assert e.instruction.endswith({1: "bigger", -1: "smaller"}[step])
            else:
                assert changed <= {"cx", "cy"} and changed
                d = (p.cx - o.cx, p.cy - o.cy)
                word = e.instruction.split()[-1]
                expect = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[word]
                np.testing.assert_allclose(d, np.multiply(expect, MOVE_STEP), atol=1e-9)
        # every changed pixel lies inside the region
        size = 64
        delta = np.abs(render_array(e.source, size) - render_array(e.target, size)).max(axis=2)
        ys, xs = np.nonzero(delta > 0)
        assert len(ys) > 0
        x0, y0, x1, y1 = (v * size for v in e.region)
        assert xs.min() >= np.floor(x0) and xs.max() < np.ceil(x1)
        assert ys.min() >= np.floor(y0) and ys.max() < np.ceil(y1)


def test_edit_success_checks_tell_source_from_target():
    for i in range(60):
        e = edit_sample(0, i)
        assert e.kind == EDIT_KINDS[i % 5]
        tgt, src = render(e.target, 32), render(e.source, 32)
        assert check_scene(tgt, e.target).ok
        assert not check_scene(src, e.target).ok, e.instruction
        assert check(tgt, scene_spec(e.target)).ok
        if e.kind in ("recolour", "add", "remove"):  # these change the object inventory
            assert not check(src, scene_spec(e.target)).ok
    assert edit_sample(3, 7) == edit_sample(3, 7)
    with pytest.raises(ValueError, match="unknown edit kind"):
        edit_pair(np.random.default_rng(0), "rotate")
