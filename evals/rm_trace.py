"""Where a judge's chain of rubrics goes wrong, step by step, on pairs with known answers.

A templated Reasoning trace (`reasoning.rm_r1.procedural.template_trace`) has four checkable
steps: its own `<solution>` ends in a value, it quotes each response's answer
(`<quote_A>`, `<quote_B>`), it states `Mine: value`, and it names the response whose quote equals
its own value. For procedural pairs the right value and both answers are known, so each step is
scored separately:

- `solution`: the value the solution ends in is the right one;
- `quote_A` / `quote_B`: the quote is exactly the answer shown at A / at B;
- `mine`: the stated value is the right one;
- `follows`: the verdict names the response whose quote equals the stated value (over the traces
  where exactly one quote does: `defined` is their share).

A verdict can be right with every step wrong (a position habit) or wrong with every step right
(a copy slip); these rates tell the two apart. Rates are over every judgement of both orders.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from reasoning.rm_r1.judge import Judgement

STEPS = ("solution", "quote_A", "quote_B", "mine", "follows", "defined")


def _tag(trace: str, name: str) -> str | None:
    m = re.search(f"<{name}>(.*?)</{name}>", trace, re.DOTALL)
    return m.group(1).strip() if m else None


def _solution_value(trace: str) -> str | None:
    sol = _tag(trace, "solution")
    return None if sol is None else re.split(r"\s==?\s", sol)[-1].strip()


def _mine(trace: str) -> str | None:
    m = re.search(r"Mine: (.*?), so ", trace, re.DOTALL)
    return m.group(1).strip() if m else None


def step_checks(trace: str, verdict: str | None, right: str, a: str, b: str) -> dict[str, float]:
    """The step scores (0 / 1) of one trace judging answers `a` (at A) and `b` (at B)."""
    qa, qb, mine = _tag(trace, "quote_A"), _tag(trace, "quote_B"), _mine(trace)
    matches = [x for x, q in (("A", qa), ("B", qb)) if q is not None and q == mine]
    out = {
        "solution": float(_solution_value(trace) == right),
        "quote_A": float(qa == a),
        "quote_B": float(qb == b),
        "mine": float(mine == right),
        "defined": float(len(matches) == 1),
    }
    out["follows"] = float(len(matches) == 1 and verdict == matches[0])
    return out


def trace_steps(
    truth: Sequence[tuple[str, str]], ab: Sequence[Judgement], ba: Sequence[Judgement]
) -> dict[str, float]:
    """Mean step scores over both orders; `truth[i]` = (right, wrong) answer of pair i, whose
    chosen answer is at A in `ab[i]` and at B in `ba[i]`."""
    rows = [step_checks(j.reasoning, j.verdict, r, r, w) for (r, w), j in zip(truth, ab)]
    rows += [step_checks(j.reasoning, j.verdict, r, w, r) for (r, w), j in zip(truth, ba)]
    if not rows:
        return {}
    means = {k: sum(x[k] for x in rows) / len(rows) for k in STEPS if k != "follows"}
    defined = sum(x["defined"] for x in rows)
    means["follows"] = sum(x["follows"] for x in rows) / defined if defined else 0.0
    return {"n": len(rows), **means}


def steps_line(steps: dict[str, float]) -> str:
    """One printed line of the step scores."""
    return "trace steps: " + ", ".join(f"{k} {steps[k]:.3f}" for k in STEPS)
