"""Reward-model suites for the RM-R1 judge: RM-Bench and any preference-pair file.

Every pair is judged in BOTH A/B orders (chosen at A, then chosen at B); we report the accuracy
of each order, their mean, the position-consistency rate (both orders prefer the same response)
and the format-failure rate. RM-Bench (Liu et al. 2025, Sec. 4) compares each of the 3 chosen
styles i (concise, detailed, detailed + markdown) with each of the 3 rejected styles j: entry
(i, j) of the 3x3 matrix is the accuracy of that comparison; hard = mean of the upper-right
triangle (i < j: the chosen answer is plainer than the rejected one), normal = the diagonal,
easy = the lower-left triangle. Per-domain numbers are averaged into the overall score, as
RM-Bench does. Left out: RM-Bench's math split (not on hand) and RewardBench / RMB.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evals.rm_trace import steps_line, trace_steps
from evals.stats import binomial_se
from reasoning.rm_r1.data import (
    PreferencePair,
    RMBenchItem,
    read_preference_file,
    read_rm_bench,
)
from reasoning.rm_r1.judge import Judgement, judge_many
from reasoning.rm_r1.prompts import PromptStyle
from reasoning.rm_r1.verdict import Verdict
from unimodal.backbone import Backbone

STYLE_NAMES = ("concise", "detailed", "markdown")


def both_orders(
    verdict_ab: Sequence[Verdict | None], verdict_ba: Sequence[Verdict | None]
) -> dict[str, np.ndarray]:
    """Per-pair outcomes: chosen at A judged 'A' (ab), chosen at B judged 'B' (ba), consistent."""
    ab = np.array([v == "A" for v in verdict_ab], dtype=float)
    ba = np.array([v == "B" for v in verdict_ba], dtype=float)
    consistent = np.array(
        [(x, y) in (("A", "B"), ("B", "A")) for x, y in zip(verdict_ab, verdict_ba)], dtype=float
    )
    failed = np.array([(x is None) + (y is None) for x, y in zip(verdict_ab, verdict_ba)]) / 2
    return {"ab": ab, "ba": ba, "consistent": consistent, "format_fail": failed}


def summary(outcomes: dict[str, np.ndarray]) -> dict[str, float]:
    """Accuracies of each order, their mean, consistency and format failures (pair means)."""
    ab, ba = outcomes["ab"].mean(), outcomes["ba"].mean()
    return {
        "n": int(outcomes["ab"].size),
        "acc_chosen_A": float(ab),
        "acc_chosen_B": float(ba),
        "accuracy": float((ab + ba) / 2),
        "consistency": float(outcomes["consistent"].mean()),
        "format_fail": float(outcomes["format_fail"].mean()),
    }


def style_matrix_scores(correct: np.ndarray) -> dict[str, Any]:
    """RM-Bench scores from per-item correctness (N, 3, 3) [chosen style i, rejected style j]."""
    m = np.asarray(correct, dtype=float).mean(0)  # (3, 3)
    return {
        "matrix": m.tolist(),
        "hard": float(m[np.triu_indices(3, 1)].mean()),
        "normal": float(np.diag(m).mean()),
        "easy": float(m[np.tril_indices(3, -1)].mean()),
        "avg": float(m.mean()),
    }


def judge_both_orders(
    backbone: Backbone,
    pairs: Sequence[PreferencePair],
    head: str | None = "judge",
    style: PromptStyle = "instruct",
    max_new_tokens: int = 1024,
    batch_size: int = 8,
) -> tuple[dict[str, np.ndarray], list[Judgement], list[Judgement]]:
    """Greedy judgements of every pair in both orders: per-pair outcomes, the judgements with
    the chosen answer at A, and those with it at B."""
    inputs = [(p.prompt, p.chosen, p.rejected) for p in pairs]
    inputs += [(p.prompt, p.rejected, p.chosen) for p in pairs]
    js = judge_many(backbone, inputs, head, style, max_new_tokens, 0.0, batch_size)
    ab, ba = js[: len(pairs)], js[len(pairs) :]
    return both_orders([j.verdict for j in ab], [j.verdict for j in ba]), ab, ba


def _per_domain(
    outcomes: dict[str, np.ndarray], domains: Sequence[str]
) -> dict[str, dict[str, np.ndarray]]:
    index: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(domains):
        index[d].append(i)
    return {d: {k: v[idx] for k, v in outcomes.items()} for d, idx in sorted(index.items())}


def evaluate_pair_list(
    backbone: Backbone,
    pairs: Sequence[PreferencePair],
    head: str | None = "judge",
    style: PromptStyle = "instruct",
    max_new_tokens: int = 1024,
    batch_size: int = 8,
    n_samples: int = 4,
    truth: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Judge every pair in both orders; overall and per-domain summaries, a few traces, and with
    `truth` ((right, wrong) answer per pair) the chain-of-rubrics step scores (`evals.rm_trace`)."""
    out, ab, ba = judge_both_orders(backbone, pairs, head, style, max_new_tokens, batch_size)
    steps = {"steps": trace_steps(truth, ab, ba)} if truth else {}
    return {
        "suite": "pairs",
        "overall": summary(out),
        "per_domain": {
            d: summary(o) for d, o in _per_domain(out, [p.domain for p in pairs]).items()
        },
        "samples": [
            {"id": p.id, "verdict_chosen_A": j.verdict, "trace": j.reasoning}
            for p, j in zip(pairs[:n_samples], ab)
        ],
        **steps,
    }


def evaluate_pairs(
    backbone: Backbone, data: str | Path, limit: int | None = None, **kw: Any
) -> dict[str, Any]:
    """The `pairs` suite on a preference file (pairs JSONL or hh-rlhf); its first `limit` pairs."""
    pairs = read_preference_file(data)[:limit]
    return {**evaluate_pair_list(backbone, pairs, **kw), "data": str(data)}


def rm_bench_pairs(items: Sequence[RMBenchItem]) -> list[PreferencePair]:
    """The 9 style comparisons of each item, in (chosen style i, rejected style j) row order."""
    return [
        PreferencePair(it.prompt, it.chosen[i], it.rejected[j], it.domain, f"{it.id}/{i}{j}")
        for it in items
        for i in range(3)
        for j in range(3)
    ]


def rm_bench_scores(outcomes: dict[str, np.ndarray], domains: Sequence[str]) -> dict[str, Any]:
    """Per-domain summaries and 3x3 style scores from per-pair outcomes (9 pairs per item)."""
    per_domain = {}
    for d, o in _per_domain(outcomes, domains).items():
        correct = ((o["ab"] + o["ba"]) / 2).reshape(-1, 3, 3)  # (N, 3, 3), both orders
        per_domain[d] = {**summary(o), **style_matrix_scores(correct)}
    keys = ("accuracy", "acc_chosen_A", "acc_chosen_B", "consistency", "format_fail")
    keys += ("hard", "normal", "easy")
    overall = {k: float(np.mean([r[k] for r in per_domain.values()])) for k in keys}
    return {"overall": overall, "per_domain": per_domain}


def evaluate_rm_bench(
    backbone: Backbone,
    data: str | Path,
    head: str | None = "judge",
    style: PromptStyle = "instruct",
    domains: Sequence[str] | None = None,
    limit_per_domain: int | None = None,
    max_new_tokens: int = 1024,
    batch_size: int = 8,
) -> dict[str, Any]:
    """RM-Bench from a folder of `*_filtered.json` (or one file); `limit_per_domain` items each."""
    items = read_rm_bench(data, domains)
    if limit_per_domain is not None:
        count: dict[str, int] = defaultdict(int)
        kept = []
        for it in items:
            count[it.domain] += 1
            if count[it.domain] <= limit_per_domain:
                kept.append(it)
        items = kept
    pairs = rm_bench_pairs(items)
    out, _, _ = judge_both_orders(backbone, pairs, head, style, max_new_tokens, batch_size)
    return {
        "suite": "rm-bench",
        "data": str(data),
        **rm_bench_scores(out, [p.domain for p in pairs]),
    }


def rm_table(report: dict[str, Any]) -> str:
    """A plain-text table of either suite's report."""
    cols = ("accuracy", "acc_chosen_A", "acc_chosen_B", "consistency")
    extra = ("format_fail",) + (("hard", "normal", "easy") if "hard" in report["overall"] else ())
    head = f"{'domain':<12} {'n':>6} " + " ".join(f"{c:>12}" for c in cols + extra)
    rows = [head]
    for d, r in [*report["per_domain"].items(), ("overall", report["overall"])]:
        n = f"{r['n']:>6}" if "n" in r else f"{'':>6}"
        vals = " ".join(f"{r[c]:>12.3f}" if c in r else f"{'':>12}" for c in cols + extra)
        rows.append(f"{d:<12} {n} {vals}")
    return "\n".join(rows + ([steps_line(report["steps"])] if report.get("steps") else []))


def heldout_record(report: dict[str, Any], stage: str, previous: Path | None = None) -> dict:
    """The `OUT/eval_heldout.json` record of a held-out pair report: per stage the accuracy in
    each order (`ab`: chosen at A, `ba`: chosen at B) with standard errors, and the position
    consistency; the record in `previous` (the SFT stage's, for the RL stage) is carried over."""
    o = report["overall"]
    n = o["n"]

    row = {"ab": o["acc_chosen_A"], "ba": o["acc_chosen_B"], "consistency": o["consistency"]}
    row |= {
        "se_ab": binomial_se(row["ab"], n),
        "se_ba": binomial_se(row["ba"], n),
        "format_fail": o["format_fail"],
    }
    row |= {"n": n, "per_domain": report.get("per_domain", {})}
    old = json.loads(previous.read_text()) if previous and previous.is_file() else {}
    return {**old, "n": n, stage: row}
