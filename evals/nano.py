"""Nano-world suites: held-out accuracy per AZR task type, and CRUXEval's nano-sized subset.

- `evaluate_kinds`: greedy accuracy on held-out deduction / abduction / induction tasks
  (`reasoning.nano.tasks.heldout_tasks`) with the binomial standard error sqrt(p (1 - p) / n);
  posed with the AZR solver prompts and checked by the sandboxed executor (`evaluate_tasks`).
- `nano_sized`: whether a CRUXEval problem is inside the nano world's scope (one argument that
  is an int, a string or a list of ints; at most 8 lines of body; input and output literals of
  at most 40 characters); `evaluate_cruxeval(..., nano=True)` scores that subset as CRUXEval-O
  (deduction) and CRUXEval-I (abduction): `tools/eval.py --suite cruxeval-nano`.
Left out: sampled (pass@k > 1) variants; `evals.code_suites` has them for the full suites.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path

from evals.code_suites import _read_jsonl, evaluate_tasks
from evals.stats import binomial_se
from reasoning.azr.tasks import Task
from reasoning.executor import Executor
from unimodal.backbone import Backbone

MAX_BODY_LINES = 8
MAX_LITERAL_CHARS = 40


def evaluate_kinds(
    backbone: Backbone,
    executor: Executor,
    tasks: Mapping[str, Sequence[Task]],
    max_new_tokens: int = 128,
    batch_size: int = 32,
) -> dict[str, dict[str, float]]:
    """Per task type: greedy accuracy, its standard error, format rate, n."""
    out: dict[str, dict[str, float]] = {}
    for kind, ts in tasks.items():
        part = evaluate_tasks(
            backbone, executor, ts, kind, max_new_tokens=max_new_tokens, batch_size=batch_size
        )
        row = part["rows"][kind]
        p, n = row["pass@1"], row["n"]
        out[kind] = {
            "accuracy": p,
            "se": binomial_se(p, n),
            "format_rate": row["format_rate"],
            "n": n,
        }
    return out


def kinds_table(points: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """One row per evaluation point, `accuracy ± se (format rate)` per task type."""
    kinds = list(next(iter(points.values()))) if points else []
    lines = [f"{'point':<10} " + " ".join(f"{k:>24}" for k in kinds)]
    for name, row in points.items():
        cells = [
            f"{row[k]['accuracy']:.3f} ± {row[k]['se']:.3f} ({row[k]['format_rate']:.2f})"
            for k in kinds
        ]
        lines.append(f"{name:<10} " + " ".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)


def nano_sized(row: dict) -> bool:
    """Whether a CRUXEval problem lies in the nano world's scope (see the module docstring)."""
    try:
        tree = ast.parse(row["code"])
        value = ast.literal_eval(row["input"])
    except (SyntaxError, ValueError):
        return False
    fn = tree.body[0] if len(tree.body) == 1 else None
    if not isinstance(fn, ast.FunctionDef) or len(fn.args.args) != 1:
        return False
    ints = isinstance(value, list) and all(type(v) is int for v in value)
    if not (type(value) in (int, str) or ints):
        return False
    short = max(len(row["input"]), len(row["output"])) <= MAX_LITERAL_CHARS
    return short and row["code"].strip().count("\n") <= MAX_BODY_LINES


def cruxeval_nano_rows(data_path: str | Path) -> list[dict]:
    """The CRUXEval rows inside the nano world's scope."""
    return [r for r in _read_jsonl(data_path, 0) if nano_sized(r)]
