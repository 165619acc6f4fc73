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
from unimodal.pg.advantages import (
    ESTIMATORS,
    estimate,
    group_whiten,
    grpo_advantages,
    task_relative_advantages,
)
from unimodal.pg.loss import aggregate, clipped_surrogate, k3_kl, pg_loss

__all__ = [
    "ESTIMATORS",
    "Batch",
    "PGConfig",
    "Rollout",
    "aggregate",
    "clipped_surrogate",
    "collate",
    "estimate",
    "forced_rollout",
    "generate",
    "group_whiten",
    "grpo_advantages",
    "k3_kl",
    "pg_loss",
    "policy_step",
    "response_logprobs",
    "task_relative_advantages",
]
