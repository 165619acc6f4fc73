"""Advantage estimators for outcome rewards (one scalar reward per sequence, gamma = 1).

- GRPO (Shao et al. 2024, DeepSeekMath eq. 3): A_i = (r_i - mean(r_g)) / std(r_g) within the
  group g of samples for the same prompt; Dr. GRPO (Liu et al. 2025) drops the std division.
- Task-relative REINFORCE++ (Absolute Zero, Zhao et al. 2025, eq. 8): REINFORCE++ whitening
  (Hu 2025; with gamma = 1 every token's return is the sequence reward) done separately for each
  (task type x role) group, i.e. six baselines for AZR. `task_relative` counts each sequence
  once (eq. 8 as written); `task_relative_tokens` counts it once per token, which is what the
  official code computes (veRL's REINFORCE++ `masked_whiten` over the response tokens of each
  task-role batch: token mean, Bessel-corrected token variance).

Every estimator is `group_whiten` with a different grouping and weighting.
Left out on purpose: critics / GAE, per-token KL penalties folded into the reward, and a single
batch-wide REINFORCE++ baseline (no config uses it; it is `group_whiten` with one group).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import torch


def group_whiten(
    rewards: torch.Tensor,
    groups: Sequence[Hashable],
    weights: torch.Tensor | None = None,
    scale: bool = True,
    unbiased: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """A_i = (r_i - mu_g(i)) / (sigma_g(i) + eps) with mean and std taken within each group.

    rewards (N,); groups: one hashable key per reward; weights (N,) optional (e.g. response
    lengths for token-weighted statistics). `scale=False` only centres (Dr. GRPO). A group whose
    total weight is <= 1 gets advantage 0 (no baseline can be formed from a single sample).
    """
    if len(groups) != rewards.shape[0]:
        raise ValueError(f"{rewards.shape[0]} rewards but {len(groups)} group keys")
    r = rewards.double()  # (N,)
    w = torch.ones_like(r) if weights is None else weights.to(r)  # (N,)
    out = torch.zeros_like(r)
    index: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        index.setdefault(g, []).append(i)
    for rows in index.values():
        idx = torch.tensor(rows, device=r.device)
        rg, wg = r[idx], w[idx]  # (n_g,)
        n = wg.sum()
        if n <= 1:
            continue
        mean = (wg * rg).sum() / n
        centred = rg - mean
        if scale:
            var = (wg * centred**2).sum() / (n - 1 if unbiased else n)
            centred = centred / (var.sqrt() + eps)
        out[idx] = centred
    return out.to(rewards.dtype)


def grpo_advantages(
    rewards: torch.Tensor, prompt_groups: Sequence[Hashable], scale_std: bool = True
) -> torch.Tensor:
    """GRPO: normalise within the samples of each prompt; `scale_std=False` is Dr. GRPO."""
    return group_whiten(rewards, prompt_groups, scale=scale_std)


def task_relative_advantages(
    rewards: torch.Tensor, keys: Sequence[Hashable], lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """Task-relative REINFORCE++ (AZR eq. 8): whiten within each (task type, role) key."""
    return group_whiten(rewards, keys, weights=lengths)


ESTIMATORS: dict[str, Callable[..., torch.Tensor]] = {  # AZR's choices, by config name
    "task_relative": lambda rewards, keys, lengths: task_relative_advantages(rewards, keys),
    "task_relative_tokens": task_relative_advantages,
}


def estimate(
    name: str,
    rewards: torch.Tensor,
    keys: Sequence[Hashable],
    lengths: torch.Tensor,
) -> torch.Tensor:
    """Advantages (N,) by config name from rewards (N,), task-role keys, response lengths (N,)."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown advantage estimator '{name}' (one of {', '.join(ESTIMATORS)})")
    return ESTIMATORS[name](rewards, keys, lengths)
