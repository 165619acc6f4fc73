"""`bench.py grpo-vs-trl`: our GRPO step against TRL's `GRPOTrainer` on the same model and data.

TRL is not a dependency (it pins its own torch range); without it the mode reports why it was
skipped and exits cleanly. Left out on purpose: installing TRL from here.
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--group", type=int, default=8, help="samples per prompt")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"mode": "grpo-vs-trl"}
    if importlib.util.find_spec("trl") is None:
        report["skipped"] = (
            "trl is not installed (not a project dependency); install it next to a torch it "
            "accepts (torch<=2.14.1 here) to compare our GRPO step with TRL's GRPOTrainer"
        )
        return report
    import trl

    report["trl"] = trl.__version__
    report["skipped"] = (
        "trl is installed, but the side-by-side GRPO step is not written yet: compare "
        "reasoning.pg.policy_step with trl.GRPOTrainer on the same backbone, prompts and group "
        f"size {args.group} (tokens/s and step time)"
    )
    return report


def table(report: dict[str, Any]) -> str:
    return f"grpo-vs-trl: skipped ({report['skipped']})"
