"""The clipped policy-gradient objective (PPO, Schulman et al. 2017, eq. 7) and its add-ons.

Per token t of sequence i, with ratio rho = exp(log pi(y_t) - log pi_old(y_t)):

    l_pg = -min(rho * A_i, clip(rho, 1 - eps_low, 1 + eps_high) * A_i)       (PPO / DAPO clip)
    l    = l_pg + beta * k3(pi, pi_ref) - c_H * H(pi)

k3 is Schulman's unbiased, always-positive estimator of KL(pi || pi_ref):
exp(log pi_ref - log pi) - (log pi_ref - log pi) - 1 (used by GRPO and RM-R1 with beta = 1e-3).
Aggregation (veRL's `loss_agg_mode` names):
- token-mean: every response token of the batch weighs the same (DAPO; TRL `bnpo`);
- seq-mean: mean over tokens within a sequence, then over sequences (GRPO; TRL `grpo`);
- seq-mean-token-sum-norm: the token sum divided by B x L_max, a constant per batch, so no
  sequence's tokens are down-weighted for its length (Dr. GRPO, Liu et al. 2025; TRL `dr_grpo`,
  whose L_max is `max_completion_length`). By default L_max is the padded width T of `values`.
A `normaliser` lets micro-batches share the full batch's denominator so their gradients sum to
the batch's (for seq-mean-token-sum-norm it is B x L_max of the whole batch).
Left out on purpose: value losses, dual-clip PPO, KL-in-reward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Reduce = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref): e^(ref - logp) - (ref - logp) - 1 (same shape)."""
    d = (ref_logp - logp).clamp(-20.0, 20.0)
    return d.exp() - d - 1.0


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float,
    clip_high: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO loss -min(rho A, clip(rho) A) and a mask of tokens where the clip is active.

    logp, old_logp (B, T); advantages (B,) per sequence or (B, T) per token.
    """
    adv = advantages[:, None] if advantages.dim() == 1 else advantages  # (B, 1) or (B, T)
    ratio = torch.exp((logp - old_logp).clamp(-20.0, 20.0))  # (B, T)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * adv
    loss = -torch.minimum(unclipped, clipped)  # (B, T)
    return loss, (clipped < unclipped).float()


def _token_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum()


def _seq_means(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((values * mask).sum(-1) / mask.sum(-1).clamp(min=1)).sum()  # sum_i mean_t


# mode -> (numerator, default denominator) of the reduction of masked (B, T) values
AGGREGATIONS: dict[str, tuple[Reduce, Reduce]] = {
    "token-mean": (_token_sum, lambda v, m: m.sum().clamp(min=1)),
    "seq-mean": (_seq_means, lambda v, m: v.new_tensor(float(v.shape[0]))),
    "seq-mean-token-sum-norm": (_token_sum, lambda v, m: v.new_tensor(float(v.numel()))),
}


def aggregate(
    values: torch.Tensor, mask: torch.Tensor, mode: str, normaliser: float | None = None
) -> torch.Tensor:
    """Reduce per-token values (B, T) under mask (B, T) to a scalar (see AGGREGATIONS).

    token-mean: sum(values * mask) / normaliser (default: number of tokens);
    seq-mean: sum_i mean_t(values_i) / normaliser (default: number of sequences B);
    seq-mean-token-sum-norm: sum(values * mask) / normaliser (default: B x T).
    """
    if mode not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation '{mode}' (one of {', '.join(AGGREGATIONS)})")
    numerator, denominator = AGGREGATIONS[mode]
    m = mask.to(values.dtype)
    return numerator(values, m) / (normaliser if normaliser is not None else denominator(values, m))


def pg_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    aggregation: str = "token-mean",
    normaliser: float | None = None,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The full objective on one (micro-)batch: clipped surrogate + beta k3 KL - c_H entropy.

    All token tensors are (B, T) over response tokens; returns (loss, detached statistics).
    `weights` (B, T) scale the surrogate term per token (importance weights, `unimodal.pg.
    importance`).
    """
    per_token, clipped = clipped_surrogate(logp, old_logp, advantages, clip_low, clip_high)
    if weights is not None:
        per_token = per_token * weights
    stats = {"clip_frac": aggregate(clipped, mask, "token-mean").detach()}
    if ref_logp is not None:
        kl = k3_kl(logp, ref_logp)  # (B, T)
        stats["kl"] = aggregate(kl.detach(), mask, "token-mean")
        if kl_coef:
            per_token = per_token + kl_coef * kl
    if entropy is not None:
        stats["entropy"] = aggregate(entropy.detach(), mask, "token-mean")
        if entropy_coef:
            per_token = per_token - entropy_coef * entropy
    loss = aggregate(per_token, mask, aggregation, normaliser)
    return loss, stats
