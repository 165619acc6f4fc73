"""Text rollouts and the policy update for Absolute Zero and RM-R1; the maths is `unimodal.pg`."""

from reasoning.pg.rollout import (
    Batch,
    Rollout,
    collate,
    forced_rollout,
    generate,
    response_logprobs,
)
from reasoning.pg.step import PGConfig, policy_step

__all__ = [
    "Batch",
    "PGConfig",
    "Rollout",
    "collate",
    "forced_rollout",
    "generate",
    "policy_step",
    "response_logprobs",
]
