"""GenEval in the shapes world: generate for a fixed seeded set of held-out prompts, score with
the checker.

The six GenEval categories (single object, two objects, counting, colours, position, colour
attribution); an image counts as correct when the checker finds the prompt's spec satisfied.
The overall score is the mean of the per-category accuracies, as in GenEval's table.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from unimodal.data import CATEGORIES, check, geneval_prompts
from unimodal.gen_rl.evaluate import standard_error
from unimodal.grid import save_grid, to_pil


@torch.no_grad()
def evaluate_geneval_shapes(
    generator,
    out_dir: str | Path,
    n_per_category: int = 32,
    seed: int = 0,
    batch_size: int = 32,
    steps: int | None = None,
    guidance: float | None = None,
) -> dict:
    """Generate, check and write `report.json` plus a grid per category under `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = geneval_prompts(n_per_category, seed)
    results: dict[str, list[int]] = {c: [] for c in CATEGORIES}
    per_cat_images: dict[str, list] = {c: [] for c in CATEGORIES}
    rows = []
    for s in range(0, len(items), batch_size):
        batch = items[s : s + batch_size]
        imgs = to_pil(
            generator.generate(
                [it.text for it in batch], steps=steps, guidance=guidance, seed=seed + s
            )
        )
        for it, im in zip(batch, imgs):
            res = check(im, it.spec)
            results[it.category].append(int(res.ok))
            per_cat_images[it.category].append((im, f"{'OK' if res.ok else 'X'} {it.text}"))
            rows.append(
                {"prompt": it.text, "category": it.category, "ok": res.ok, "reason": res.reason}
            )
    per_cat = {c: sum(v) / len(v) for c, v in results.items() if v}
    report = {
        "suite": "geneval-shapes",
        "overall": sum(per_cat.values()) / max(1, len(per_cat)),
        "standard_error": standard_error(per_cat, n_per_category),
        "per_category": per_cat,
        "n_per_category": n_per_category,
        "held_out": "every prompt is a held-out spec (unimodal/data/split.py)",
        "results": rows,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    for c, pairs in per_cat_images.items():
        if pairs:
            save_grid([p[0] for p in pairs], [p[1] for p in pairs], out / f"{c}.png", cell=96)
    return report


def geneval_table(report: dict) -> str:
    cats = list(report["per_category"])
    head = " ".join(f"{c:>13}" for c in cats)
    vals = " ".join(f"{report['per_category'][c]:>13.3f}" for c in cats)
    se = report.get("standard_error")
    tail = f"\n(held-out prompts, n = {report['n_per_category']} per category"
    tail += f"; overall standard error {se:.3f})" if se is not None else ")"
    return f"{'overall':>9} {head}\n{report['overall']:>9.3f} {vals}{tail}"
