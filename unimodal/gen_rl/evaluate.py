"""Before / after evaluation of an RL run on held-out GenEval-shapes prompts.

Both models sample with the deterministic ODE sampler at the model's own settings (the
inference default), image i from noise seeded `eval.seed + i`, so "before" and "after" see the
same start noise. "Before" is the supervised reference (its weights swapped in), so a resumed
run still compares against the model it started from. Scores: the checker (GenEval-shapes),
the strict checker, and the share of images with stray blobs or background noise
(`unimodal.gen_rl.reward`). The overall score is the mean of the category accuracies (GenEval's
table); its standard error is sqrt(sum_c p_c (1 - p_c) / n_c) / 6.

Writes OUT/rl_eval.json in the issue's shape (`n_per_category`, `before`, `after`,
`strict_before`, `strict_after`), OUT/rl_audit.json (stray shares, standard errors, the held-out
specs) and OUT/before_after.png (the same seeds, top row before, bottom row after).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from PIL import Image

from unimodal.data import CATEGORIES, PromptItem, geneval_prompts, heldout_specs
from unimodal.gen_rl.config import GenRLConfig
from unimodal.gen_rl.policy import Reference
from unimodal.gen_rl.reward import Score, score
from unimodal.generator import Generator
from unimodal.grid import save_grid, to_pil


@torch.no_grad()
def score_items(
    gen: Generator, items: list[PromptItem], seed: int, batch_size: int
) -> tuple[list[Score], list[Image.Image]]:
    """ODE samples of every item (item i from seed `seed + i`) and their scores."""
    scores, images = [], []
    for s in range(0, len(items), batch_size):
        batch = items[s : s + batch_size]
        seeds = [seed + s + i for i in range(len(batch))]
        imgs = gen.generate([it.text for it in batch], seeds=seeds)  # (b, 3, H, W)
        scores += [score(img, it.spec) for img, it in zip(imgs.cpu(), batch)]
        images += to_pil(imgs)
    return scores, images


def summarise(items: list[PromptItem], values: list[bool]) -> dict[str, float]:
    """{"overall": mean of category means, "<category>": mean} of per-item booleans."""
    per = {c: [float(v) for it, v in zip(items, values) if it.category == c] for c in CATEGORIES}
    out = {c: sum(v) / len(v) for c, v in per.items() if v}
    return {"overall": sum(out.values()) / max(1, len(out)), **out}


def standard_error(summary: dict[str, float], n: int) -> float:
    """Standard error of the overall score (mean of category accuracies, n items each)."""
    cats = [c for c in summary if c != "overall"]
    var = sum(summary[c] * (1 - summary[c]) / n for c in cats)
    return math.sqrt(var) / max(1, len(cats))


def before_after(gen: Generator, reference: Reference, cfg: GenRLConfig, out: Path) -> dict:
    """Score the reference and the trained policy on the held-out prompts; write the reports."""
    e = cfg.eval
    items = geneval_prompts(e.n_per_category)  # the supervised run's evaluation set
    with reference.active():
        before, imgs_before = score_items(gen, items, e.seed, e.batch_size)
    after, imgs_after = score_items(gen, items, e.seed, e.batch_size)
    report = {"n_per_category": e.n_per_category}
    for name, scores in (("before", before), ("after", after)):
        report[name] = summarise(items, [s.ok for s in scores])
    for name, scores in (("strict_before", before), ("strict_after", after)):
        report[name] = summarise(items, [s.strict_ok for s in scores])
    (out / "rl_eval.json").write_text(json.dumps(report, indent=2))
    audit = {
        "stray_before": summarise(items, [s.stray for s in before]),
        "stray_after": summarise(items, [s.stray for s in after]),
        "standard_error": {
            k: standard_error(report[k], e.n_per_category) for k in report if k != "n_per_category"
        },  # fmt: skip
        "held_out_specs": {c: len(heldout_specs(c)) for c in CATEGORIES},
    }
    (out / "rl_audit.json").write_text(json.dumps(audit, indent=2))
    pick = [i for c in CATEGORIES for i in [k for k, it in enumerate(items) if it.category == c][: e.grid_per_category]]  # fmt: skip
    caps = [f"before: {items[i].text}" for i in pick] + [f"after: {items[i].text}" for i in pick]
    grid = [imgs_before[i] for i in pick] + [imgs_after[i] for i in pick]
    save_grid(grid, caps, out / "before_after.png", cols=max(1, len(pick)))
    return report | audit


def eval_table(report: dict) -> str:
    """The before / after table with standard errors and stray shares, one row per setting."""
    cats = ["overall", *CATEGORIES]
    rows = [f"{'':>14}" + "".join(f"{c[:12]:>13}" for c in cats)]
    names = ("before", "after", "strict_before", "strict_after", "stray_before", "stray_after")
    for name in names:
        rows.append(f"{name:>14}" + "".join(f"{report[name].get(c, float('nan')):>13.3f}" for c in cats))  # fmt: skip
    se = report["standard_error"]
    rows.append(f"overall standard error: before {se['before']:.3f}, after {se['after']:.3f}")
    return "\n".join(rows)
