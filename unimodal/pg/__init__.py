"""Policy-gradient maths shared by every RL user (self-play, the judge, the image generator).

Only tensors in, tensors out: advantages per group and the clipped surrogate with its KL and
aggregation options. Rollouts of text live in `reasoning.pg`; rollouts of images in
`unimodal.gen_rl`.
"""

from unimodal.pg.advantages import (
    ESTIMATORS,
    estimate,
    group_whiten,
    grpo_advantages,
    task_relative_advantages,
)
from unimodal.pg.loss import AGGREGATIONS, aggregate, clipped_surrogate, k3_kl, pg_loss

__all__ = [
    "AGGREGATIONS",
    "ESTIMATORS",
    "aggregate",
    "clipped_surrogate",
    "estimate",
    "group_whiten",
    "grpo_advantages",
    "k3_kl",
    "pg_loss",
    "task_relative_advantages",
]
