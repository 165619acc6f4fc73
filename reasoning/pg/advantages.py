"""Advantage estimators for outcome rewards (one scalar reward per sequence, gamma = 1).

- GRPO (Shao et al. 2024, DeepSeekMath eq. 3): A_i = (r_i - mean(r_g)) / std(r_g) within the
  group g of samples for the same prompt; Dr. GRPO (Liu et al. 2025) drops the std division.
- REINFORCE++ (Hu 2025): with gamma = 1 and no per-token KL in the reward, every token's return
  is the sequence reward; advantages are whitened over the whole batch.
- Task-relative REINFORCE++ (Absolute Zero, Zhao et al. 2025, eq. 8): the same whitening done
  separately for each (task type x role) group, i.e. six baselines for AZR.

Every estimator is `group_whiten` with a different grouping. `weights` switches from
per-sequence statistics to token-weighted ones (each sequence counted once per token, as a
token-level masked whitening would), with Bessel's correction over the token count.
Left out on purpose: critics / GAE, per-token KL penalties folded into the reward.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

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


def reinforce_pp_advantages(
    rewards: torch.Tensor, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """REINFORCE++ (gamma 1): whiten over the batch; token-weighted when `lengths` is given."""
    return group_whiten(rewards, [0] * rewards.shape[0], weights=lengths)


def task_relative_advantages(
    rewards: torch.Tensor, keys: Sequence[Hashable], lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """Task-relative REINFORCE++ (AZR eq. 8): whiten within each (task type, role) key."""
    return group_whiten(rewards, keys, weights=lengths)


ESTIMATORS = ("task_relative", "task_relative_tokens", "reinforce_pp", "grpo", "dr_grpo")


def estimate(
    name: str,
    rewards: torch.Tensor,
    keys: Sequence[Hashable],
    lengths: torch.Tensor,
) -> torch.Tensor:
    """Dispatch by config name; `keys` are task-role keys (task_relative) or prompt ids (grpo)."""
    if name == "task_relative":
        return task_relative_advantages(rewards, keys)
    if name == "task_relative_tokens":
        return task_relative_advantages(rewards, keys, lengths)
    if name == "reinforce_pp":
        return reinforce_pp_advantages(rewards)
    if name in ("grpo", "dr_grpo"):
        return grpo_advantages(rewards, keys, scale_std=name == "grpo")
    raise ValueError(f"unknown advantage estimator '{name}' (one of {', '.join(ESTIMATORS)})")
