"""Read a shapes-world image back into objects, and check it against a prompt's Spec.

Detection: pixels brighter than a floor are foreground; each gets the nearest palette colour in
chromaticity space (RGB divided by its max channel, so blending with the black background leaves
it unchanged); connected components (scipy.ndimage.label) are objects, coloured by a
brightness-weighted vote and split by colour if two colours each hold a large share. Shape
comes from soft coverage features: fill = area / (soft width * soft height) (square 1, circle
0.785, triangle 0.5) and the vertical skewness of the mass (an upright triangle is top-light).
Blobs without a dominant colour, too large, or too ragged get shape "unknown", so pure noise
and blank or washed-out images fail every check instead of matching by luck.

``Tolerances`` holds the colour / shape thresholds (defaults: the normal checker); ``STRICT``
(``detect`` / ``check`` with ``tol=STRICT``) wants purer, palette-true colours and shape features
close to a clean render's.

Left out: overlapping or occluding objects, rotated shapes, non-black backgrounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from .captions import RELATIONS, Spec
from .shapes import COLORS, FILL, PALETTE, SIZE_NAMES, SIZES, Scene

_PAL = np.array([PALETTE[c] for c in COLORS], dtype=np.float32) / 255.0  # (K, 3)
_CHROMA = _PAL / _PAL.max(axis=1, keepdims=True)  # (K, 3)
FLOOR = 0.3  # brightness (max channel) below which a pixel is background
MIN_AREA = 0.008  # smallest kept component, as a fraction of the image area
SPLIT_SHARE = 0.3
MIN_PURITY = 0.5  # share of the winning colour below which the colour is "unknown"
MAX_AREA = 0.35  # larger blobs are not objects (the largest object covers 0.18)
MIN_FILL = 0.35  # ragged blobs are not objects (a triangle fills 0.5 of its box)
MIN_CIRCLE_FILL = 0.62  # a circle fills 0.785 of its box  # a second colour with this share of a component splits it
TRIANGLE_SKEW = 0.2  # |vertical skewness| above this: triangle (others ~0, triangle ~0.56)
SQUARE_FILL = 0.87  # fill above this: square (1.0), else circle (0.785)
REL_MARGIN = 0.03  # centroid offset that a relation needs, fraction of the image side


@dataclass(frozen=True)
class Tolerances:
    """Colour and shape thresholds; the defaults reproduce the checker's normal behaviour.

    Colour: a blob needs a winning share >= ``min_purity`` and a mean chromaticity distance to
    its palette colour <= ``max_chroma_err``, else its colour is "unknown". Shape: triangle when
    ``skew`` lies outside [-triangle_skew, triangle_skew] (only below it, i.e. upright, when
    ``upright_triangle``) and ``fill`` in [min_fill, max_triangle_fill]; otherwise only blobs with
    ``|skew| <= max_round_skew`` are squares (fill >= square_fill) or circles (fill in
    [min_circle_fill, max_circle_fill]); the rest are "unknown"."""

    min_purity: float = MIN_PURITY
    max_chroma_err: float = float("inf")
    triangle_skew: float = TRIANGLE_SKEW
    upright_triangle: bool = False
    min_fill: float = MIN_FILL
    max_triangle_fill: float = float("inf")
    max_round_skew: float = float("inf")
    square_fill: float = SQUARE_FILL
    min_circle_fill: float = MIN_CIRCLE_FILL
    max_circle_fill: float = SQUARE_FILL


DEFAULT = Tolerances()
# Measured on clean, blurred and noisy 32 px renders: fill circle 0.74-0.80, square 0.92-1.0,
# triangle 0.53-0.68 (skew -0.63..-0.47); |skew| <= 0.04 otherwise (tests/test_checker_strict.py)
STRICT = Tolerances(
    min_purity=0.8,
    max_chroma_err=0.15,
    triangle_skew=0.4,
    upright_triangle=True,
    min_fill=0.45,
    max_triangle_fill=0.72,
    max_round_skew=0.1,
    square_fill=0.9,
    min_circle_fill=0.71,
    max_circle_fill=0.84,
)


@dataclass(frozen=True)
class Detection:
    """One detected object; positions (centroid), area and bbox are normalised to [0, 1].
    ``shape`` or ``color`` is "unknown" for implausible blobs; fill and skew are the shape
    features."""

    shape: str
    color: str
    cx: float
    cy: float
    area: float
    bbox: tuple[float, float, float, float]
    fill: float = 0.0
    skew: float = 0.0
    chroma_err: float = 0.0  # brightness-weighted mean chromaticity distance to ``color``

    @property
    def size(self) -> str:
        """Nearest size class, inferred from the area and the shape."""
        side = np.sqrt(self.area / FILL.get(self.shape, 1.0))
        return min(SIZE_NAMES, key=lambda z: abs(np.log(SIZES[z] / side)))


@dataclass(frozen=True)
class CheckResult:
    """Verdict and a short human-readable reason ("ok" when it passes)."""

    ok: bool
    reason: str


def to_array(image) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] from a PIL image, an HWC uint8/float [0, 1] array, or a
    torch tensor (3, H, W) in [-1, 1] (the package's pixel convention)."""
    if hasattr(image, "detach"):  # torch tensor
        arr = (image.detach().float().cpu().numpy().transpose(1, 2, 0) + 1) / 2
    elif hasattr(image, "convert"):  # PIL image
        arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    else:
        arr = np.asarray(image)
        arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {arr.shape}")
    return np.clip(np.nan_to_num(arr), 0.0, 1.0)


def detect(image, tol: Tolerances = DEFAULT) -> list[Detection]:
    """All objects in ``image`` (see ``to_array`` for accepted types), sorted left to right;
    ``tol`` sets the colour and shape thresholds (``STRICT`` for the strict checker)."""
    img = to_array(image)
    h, w, _ = img.shape
    value = img.max(axis=2)  # (H, W)
    fg = value > FLOOR
    chroma = img[fg] / value[fg][:, None]  # (P, 3)
    dist = (_CHROMA**2).sum(1) - 2 * chroma @ _CHROMA.T  # (P, K), squared distance minus |c|^2
    cls = np.zeros((h, w), dtype=np.int64)
    cls[fg] = dist.argmin(axis=1)
    d2 = np.zeros((h, w, len(COLORS)), dtype=np.float32)
    d2[fg] = dist + (chroma**2).sum(1, keepdims=True)  # (P, K) squared chroma distances
    labels, _ = ndimage.label(fg)
    min_px = max(4.0, MIN_AREA * h * w)
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        comp = labels[sl] == i
        if comp.sum() < min_px:
            continue
        votes = np.bincount(cls[sl][comp], weights=value[sl][comp], minlength=len(COLORS))
        shares = votes / votes.sum()
        strong = np.flatnonzero(shares >= SPLIT_SHARE)
        if len(strong) <= 1:
            k = int(votes.argmax())
            parts = [(comp, k if shares[k] >= tol.min_purity else -1)]
        else:
            parts = []
            for k in strong:
                sub, m = ndimage.label(comp & (cls[sl] == k))
                parts += [(sub == j, int(k)) for j in range(1, m + 1)]
        for mask, k in parts:
            if mask.sum() >= min_px:
                err = _chroma_err(d2[sl][mask], value[sl][mask], k)
                out.append(_describe(img, sl, mask, k, labels, tol, err))
    return sorted(out, key=lambda d: (d.cx, d.cy))


def _chroma_err(d2: np.ndarray, value: np.ndarray, k: int) -> float:
    """Brightness-weighted mean chromaticity distance of pixels (d2 (P, K)) to colour ``k``."""
    if k < 0:
        return 0.0
    return float((np.sqrt(np.maximum(d2[:, k], 0)) * value).sum() / max(value.sum(), 1e-6))


def _shape(fill: float, skew: float, tol: Tolerances) -> str:
    """The shape named by the coverage features under ``tol`` (see ``Tolerances``)."""
    if skew < -tol.triangle_skew or (skew > tol.triangle_skew and not tol.upright_triangle):
        return "triangle" if tol.min_fill <= fill <= tol.max_triangle_fill else "unknown"
    if abs(skew) > tol.max_round_skew:
        return "unknown"
    if fill >= tol.square_fill:
        return "square"
    return "circle" if tol.min_circle_fill <= fill <= tol.max_circle_fill else "unknown"


def _describe(
    img: np.ndarray,
    sl: tuple,
    mask: np.ndarray,
    k: int,
    labels: np.ndarray,
    tol: Tolerances = DEFAULT,
    chroma_err: float = 0.0,
) -> Detection:
    """Shape features of one component (``mask`` inside the slice ``sl``) of colour ``k``
    (-1: no dominant colour). Implausible blobs get shape or colour "unknown"."""
    h, w, _ = img.shape
    # Grow the window and the mask by one pixel to take in the faint anti-aliased rim.
    y0, x0 = max(sl[0].start - 1, 0), max(sl[1].start - 1, 0)
    y1, x1 = min(sl[0].stop + 1, h), min(sl[1].stop + 1, w)
    full = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    full[sl[0].start - y0 : sl[0].stop - y0, sl[1].start - x0 : sl[1].stop - x0] = mask
    grown = ndimage.binary_dilation(full) & (labels[y0:y1, x0:x1] == 0) | full
    patch = img[y0:y1, x0:x1]  # (h', w', 3)
    ref = patch[full].mean(axis=0)
    ref = ref / max(ref.max(), 1e-6) * np.quantile(patch[full].max(axis=1), 0.9)
    cov = np.clip((patch @ ref) / max(float(ref @ ref), 1e-6), 0, 1) * grown  # (h', w')
    area = float(cov.sum())
    width = float(cov.max(axis=0).sum())  # soft extents: sum of per-column / per-row peaks
    height = float(cov.max(axis=1).sum())
    ys, xs = np.mgrid[y0:y1, x0:x1] + 0.5
    cx, cy = float((cov * xs).sum() / area), float((cov * ys).sum() / area)
    var = float((cov * (ys - cy) ** 2).sum() / area)
    skew = float((cov * (ys - cy) ** 3).sum() / area / max(var, 1e-6) ** 1.5)
    fill = area / max(width * height, 1e-6)
    if k < 0 or area > MAX_AREA * h * w:
        shape = "unknown"  # no dominant colour, or too big: not an object
    else:
        shape = _shape(fill, skew, tol)
    ys_m, xs_m = np.nonzero(full)
    bbox = (
        float(x0 + xs_m.min()) / w,
        float(y0 + ys_m.min()) / h,
        float(x0 + xs_m.max() + 1) / w,
        float(y0 + ys_m.max() + 1) / h,
    )
    color = COLORS[k] if k >= 0 and chroma_err <= tol.max_chroma_err else "unknown"
    return Detection(shape, color, cx / w, cy / h, area / (h * w), bbox, fill, skew, chroma_err)


def _select(dets: list[Detection], shape: str | None, color: str | None) -> list[Detection]:
    return [
        d
        for d in dets
        if (shape is None or d.shape == shape) and (color is None or d.color == color)
    ]


def relation_holds(a: Detection, b: Detection, relation: str, margin: float = REL_MARGIN) -> bool:
    """Whether ``a`` is ``relation`` ("left of", "right of", "above", "below") ``b``."""
    dx, dy = b.cx - a.cx, b.cy - a.cy  # positive: a is left of / above b
    return {"left of": dx, "right of": -dx, "above": dy, "below": -dy}[relation] > margin


def check(image, spec: Spec, tol: Tolerances = DEFAULT) -> CheckResult:
    """Whether ``image`` satisfies ``spec``: every group present (exactly ``count`` times when
    given, else at least once), the relation held by some pair from groups 0 and 1, and no
    unmatched objects when ``spec.exclusive``; ``tol=STRICT`` for the strict checker."""
    try:
        dets = detect(image, tol)
    except ValueError as e:
        return CheckResult(False, f"unreadable image: {e}")
    used: set[int] = set()
    for g in spec.groups:
        hits = _select(dets, g.shape, g.color)
        used |= {id(d) for d in hits}
        if g.count is None and not hits:
            return CheckResult(False, f"no {g.phrase()} found")
        if g.count is not None and len(hits) != g.count:
            return CheckResult(False, f"expected {g.count} {g.phrase()}, found {len(hits)}")
    if spec.relation is not None:
        if spec.relation not in RELATIONS:
            return CheckResult(False, f"unknown relation {spec.relation!r}")
        a_s = _select(dets, spec.groups[0].shape, spec.groups[0].color)
        b_s = _select(dets, spec.groups[1].shape, spec.groups[1].color)
        if not any(relation_holds(a, b, spec.relation) for a in a_s for b in b_s if a is not b):
            return CheckResult(False, f"{spec.groups[0].phrase()} not {spec.relation} the other")
    if spec.exclusive and len(used) != len(dets):
        return CheckResult(False, f"{len(dets) - len(used)} unexpected object(s)")
    return CheckResult(True, "ok")


def check_scene(image, scene: Scene, pos_tol: float = 0.1, check_size: bool = True) -> CheckResult:
    """Whether ``image`` shows exactly ``scene``: a one-to-one match of detections to objects
    with equal shape and colour, centroids within ``pos_tol`` and (optionally) equal size class."""
    try:
        dets = detect(image)
    except ValueError as e:
        return CheckResult(False, f"unreadable image: {e}")
    objs = scene.objects
    if len(dets) != len(objs):
        return CheckResult(False, f"expected {len(objs)} objects, found {len(dets)}")
    if not objs:
        return CheckResult(True, "ok")
    cost = np.full((len(objs), len(dets)), 1e6)
    for i, o in enumerate(objs):
        ox, oy = o.centroid
        for j, d in enumerate(dets):
            dist = float(np.hypot(d.cx - ox, d.cy - oy))
            same = d.shape == o.shape and d.color == o.color
            if same and dist <= pos_tol and (not check_size or d.size == o.size):
                cost[i, j] = dist
    rows, cols = linear_sum_assignment(cost)
    for i, j in zip(rows, cols):
        if cost[i, j] >= 1e6:
            o = objs[i]
            return CheckResult(False, f"no match for {o.size} {o.color} {o.shape} at {o.centroid}")
    return CheckResult(True, "ok")
