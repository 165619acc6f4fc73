"""Question/answer pairs about shapes-world scenes, correct by construction.

Four question types with one-word or one-number answers:

    color     "What colour is the circle?"                          -> "red"
    count     "How many squares are there?"                         -> "2"
    shape     "What shape is the blue object?"                      -> "triangle"
    position  "Is the red circle left or right of the green square?" -> "left"

Only unambiguous questions are asked: the objects named are unique in the scene, and a
position question needs a clear offset (>= POS_MIN) along the asked axis.
Left out: yes/no questions, sizes, multi-hop questions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shapes import COLORS, MAX_OBJECTS, SHAPES, Obj, Scene, sample_scene

QTYPES: tuple[str, ...] = ("color", "count", "shape", "position")
ANSWERS: dict[str, tuple[str, ...]] = {
    "color": COLORS,
    "count": tuple(str(i) for i in range(MAX_OBJECTS + 1)),
    "shape": SHAPES,
    "position": ("left", "right", "above", "below"),
}
POS_MIN = 0.15


@dataclass(frozen=True)
class QA:
    """A question, its one-word or one-number answer, and its type (one of QTYPES)."""

    question: str
    answer: str
    qtype: str


def chance_level(qtype: str) -> float:
    """Accuracy of guessing uniformly among the answers of ``qtype`` (position questions are
    binary: left/right or above/below)."""
    return 0.5 if qtype == "position" else 1.0 / len(ANSWERS[qtype])


def unique_name(scene: Scene, o: Obj) -> str | None:
    """The shortest phrase that picks ``o`` out of ``scene`` uniquely, or None."""
    if scene.count(shape=o.shape) == 1:
        return o.shape
    if scene.count(shape=o.shape, color=o.color) == 1:
        return f"{o.color} {o.shape}"
    return None


def questions(scene: Scene, qtype: str) -> list[QA]:
    """Every unambiguous question of ``qtype`` about ``scene``."""
    out: list[QA] = []
    objs = scene.objects
    if qtype == "color":
        for o in objs:
            if scene.count(shape=o.shape) == 1:
                out.append(QA(f"What colour is the {o.shape}?", o.color, qtype))
    elif qtype == "shape":
        for o in objs:
            if scene.count(color=o.color) == 1:
                out.append(QA(f"What shape is the {o.color} object?", o.shape, qtype))
    elif qtype == "count":
        for s in SHAPES:
            out.append(QA(f"How many {s}s are there?", str(scene.count(shape=s)), qtype))
        out.append(QA("How many objects are there?", str(len(objs)), qtype))
    elif qtype == "position":
        for a in objs:
            for b in objs:
                na, nb = unique_name(scene, a), unique_name(scene, b)
                if a is b or na is None or nb is None:
                    continue
                (ax, ay), (bx, by) = a.centroid, b.centroid
                if abs(bx - ax) >= POS_MIN:
                    ans = "left" if ax < bx else "right"
                    out.append(QA(f"Is the {na} left or right of the {nb}?", ans, qtype))
                if abs(by - ay) >= POS_MIN:
                    ans = "above" if ay < by else "below"
                    out.append(QA(f"Is the {na} above or below the {nb}?", ans, qtype))
    else:
        raise ValueError(f"unknown qtype {qtype!r}; expected one of {QTYPES}")
    return out


def sample_qa(rng: np.random.Generator, qtype: str | None = None) -> tuple[Scene, QA]:
    """A random scene and one unambiguous question about it (``qtype`` random if None)."""
    qtype = qtype or str(rng.choice(QTYPES))
    target = str(rng.choice(ANSWERS["count"])) if qtype == "count" else None
    while True:
        scene = sample_scene(rng)
        qas = questions(scene, qtype)
        if target is not None:  # count answers are drawn uniformly, then a scene to fit
            qas = [q for q in qas if q.answer == target]
        if qas:
            return scene, qas[int(rng.integers(len(qas)))]


def vqa_sample(seed: int, index: int) -> tuple[Scene, QA]:
    """The ``index``-th VQA sample of stream ``seed``; question types cycle for balance."""
    rng = np.random.default_rng([seed, index, 2])
    return sample_qa(rng, QTYPES[index % len(QTYPES)])
