"""Verifiable rewards for generated shapes images, and the audits against reward hacking.

`score(image, spec)` reads the image once per checker setting and returns:
- `ok`: the GenEval-shapes checker's verdict (`unimodal.data.checker.check`), the reward 1;
- `strict_ok`: a pass that also passes under the strict tolerances (`checker.STRICT`); never
  trained on. Both are required because tighter tolerances can turn a surplus blob "unknown",
  which would let a miscounted image pass a count under the strict setting alone;
- `partial`: the share of the spec's conditions met, for the optional partial credit of a
  failed image. Conditions: each group present (or, with a count, min(n, c) / max(n, c) of it),
  the relation, exclusivity. A pass is the only way to all of them, so partial credit
  `p * partial` with p < 1 never pays as much as a pass; it gives a gradient in groups where
  every image fails (e.g. counting, where "two" for "three" is closer than "one");
- `stray`: whether the image shows stray blobs or background noise: more blobs than the spec
  asks for (a group with a count asks for that many, one without for one; wrong objects in
  place of the right ones are failures, not strays), specks below the checker's minimum area
  covering more than `SPECK_AREA` of the image, or a background (pixels at least 2 px from any
  foreground) brighter than `BACKGROUND_LEVEL` on average.

Left out: learned rewards, rewards for image quality beyond what the checker reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from unimodal.data.captions import Spec
from unimodal.data.checker import (
    FLOOR,
    MIN_AREA,
    STRICT,
    Detection,
    check,
    detect,
    relation_holds,
    to_array,
)

SPECK_AREA = 0.002  # fraction of the image covered by sub-object specks that counts as stray
BACKGROUND_LEVEL = 0.05  # mean brightness (max channel, [0, 1]) of a noisy background


@dataclass(frozen=True)
class Score:
    """The checker's readings of one image against its spec."""

    ok: bool
    strict_ok: bool
    partial: float
    stray: bool

    def reward(
        self, partial_credit: float, stray_penalty: float = 0.0, stray_scope: str = "all"
    ) -> float:
        """1 for a pass, else `partial_credit` times the share of conditions met; minus
        `stray_penalty` when the image shows stray blobs or background noise (`stray_scope`
        'all': any such image; 'pass': only a pass, so a stray pass still beats a failure)."""
        base = 1.0 if self.ok else partial_credit * self.partial
        penalised = self.stray and (self.ok or stray_scope == "all")
        return base - stray_penalty * penalised


def _matches(d: Detection, shape: str | None, color: str | None) -> bool:
    return (shape is None or d.shape == shape) and (color is None or d.color == color)


def conditions_met(dets: list[Detection], spec: Spec) -> float:
    """Share (in [0, 1]) of the spec's conditions that the detections satisfy."""
    parts = []
    for g in spec.groups:
        n = sum(_matches(d, g.shape, g.color) for d in dets)
        parts.append(float(n > 0) if g.count is None else min(n, g.count) / max(n, g.count))
    if spec.relation is not None:
        a = [d for d in dets if _matches(d, spec.groups[0].shape, spec.groups[0].color)]
        b = [d for d in dets if _matches(d, spec.groups[1].shape, spec.groups[1].color)]
        parts.append(float(any(relation_holds(x, y, spec.relation) for x in a for y in b if x is not y)))  # fmt: skip
    if spec.exclusive:
        named = sum(any(_matches(d, g.shape, g.color) for g in spec.groups) for d in dets)
        parts.append(float(named == len(dets)))
    return sum(parts) / len(parts)


def has_stray(img: np.ndarray, dets: list[Detection], spec: Spec) -> bool:
    """Stray blobs or background noise in `img` (H, W, 3) in [0, 1] (see the module doc)."""
    if len(dets) > sum(g.count or 1 for g in spec.groups):
        return True
    h, w, _ = img.shape
    value = img.max(axis=2)  # (H, W)
    fg = value > FLOOR
    labels, n = ndimage.label(fg)
    sizes = ndimage.sum_labels(fg, labels, range(1, n + 1)) if n else np.zeros(0)
    min_px = max(4.0, MIN_AREA * h * w)
    if sizes[sizes < min_px].sum() > SPECK_AREA * h * w:
        return True
    far = ~ndimage.binary_dilation(fg, iterations=2)
    return bool(far.any() and value[far].mean() > BACKGROUND_LEVEL)


def score(image, spec: Spec) -> Score:
    """Checker, strict checker, partial credit and stray audit of one image (any type
    `checker.to_array` takes, e.g. a (3, H, W) tensor in [-1, 1])."""
    img = to_array(image)
    dets = detect(img)
    ok = check(img, spec).ok
    partial = 1.0 if ok else conditions_met(dets, spec)
    strict = ok and check(img, spec, STRICT).ok
    return Score(ok, strict, partial, has_stray(img, dets, spec))
