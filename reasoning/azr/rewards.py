"""Absolute Zero rewards (Zhao et al. 2025, eqs. 4-6).

Proposer (learnability, eq. 4): r = 1 - mean solve rate of n solver samples, or `extreme` when
the rate is 0 or 1. Solver (eq. 5): 1 if the executor says the answer is right. Composite
(eq. 6): `format_penalty` (-1) for a response that cannot be parsed, `wrong` (-0.5) for a
well-formed but wrong answer. The defaults are the paper's values; where the paper is silent or
the official code differs:
- a well-formed proposal whose task fails validation: -1 in the official code (it counts as a
  format error there), our `invalid_penalty`;
- solve rate 0 or 1: the paper says 0, the official code gives -0.5 (its `acc > 0` test sends
  a zero learnability to the wrong-answer branch), our `extreme`.
Left out on purpose: the diversity / complexity rewards of the paper's ablations.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RewardConfig:
    """Reward values of eq. 6 (defaults: the paper, with the official code's invalid penalty)."""

    format_penalty: float = -1.0  # unparseable response, either role
    invalid_penalty: float = -1.0  # proposer: well-formed, but the task fails validation
    extreme: float = 0.0  # proposer reward at solve rate 0 or 1 (official code: -0.5)
    wrong: float = -0.5  # solver: well-formed but wrong answer


def learnability(solve_rate: float, extreme: float = 0.0) -> float:
    """AZR eq. 4: 1 - solve rate, or `extreme` for tasks always or never solved."""
    if solve_rate <= 0.0 or solve_rate >= 1.0:
        return extreme
    return 1.0 - solve_rate


def proposer_reward(
    parsed: bool, valid: bool, solve_rate: float | None, cfg: RewardConfig
) -> float:
    """Eq. 6 for the proposer: format penalty, invalid penalty, or the learnability reward."""
    if not parsed:
        return cfg.format_penalty
    if not valid or solve_rate is None:
        return cfg.invalid_penalty
    return learnability(solve_rate, cfg.extreme)


def solver_reward(parsed: bool, correct: bool, cfg: RewardConfig) -> float:
    """Eq. 5-6 for the solver: 1 if correct, `wrong` if well-formed but wrong, else penalty."""
    if not parsed:
        return cfg.format_penalty
    return 1.0 if correct else cfg.wrong
