"""Importance-sampling correction for the rollout-engine / trainer mismatch.

Rollouts sampled by an inference engine (vLLM, SGLang, this project's server) carry the engine's
log-probs log pi_e; the trainer's own log-probs of the same tokens before the update, log pi_old,
differ (kernels, precision, batch shapes, a stale adapter). The clipped surrogate takes its ratio
against pi_old, and each sample is corrected for having been drawn from pi_e by a constant
weight on its policy-gradient term (truncated IS, Yao et al. 2025; TRL and veRL apply it):

    token-truncate:  w_t = min(exp(log pi_old_t - log pi_e_t), C)                  (C = 2)
    sequence-mask:   rho_i = exp(sum_t (log pi_old_t - log pi_e_t)), the sequence's ratio;
                     a sequence with rho_i outside [1/C, C] leaves the loss (mask 0, also out
                     of the normaliser), the others keep weight 1 (masked IS, sequence level)

Diagnostics: mean |log pi_e - log pi_old| over response tokens, and the share of tokens that
were capped (token-truncate) or dropped with their sequence (sequence-mask).
Left out on purpose: geometric-mean sequence ratios, token-level masking, a lower cap in the
token mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MODES = ("token-truncate", "sequence-mask")


@dataclass(frozen=True)
class Correction:
    """How engine rollouts are corrected (the `[rl.correction]` section)."""

    mode: str = "token-truncate"  # token-truncate | sequence-mask
    cap: float = 2.0  # C: the token weight's ceiling, or the sequence ratio's band [1/C, C]

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"rl.correction.mode: unknown '{self.mode}' ({' | '.join(MODES)})")
        if not self.cap > 1.0:
            raise ValueError(f"rl.correction.cap must be > 1, got {self.cap}")


def importance_weights(
    train_logp: torch.Tensor, engine_logp: torch.Tensor, mask: torch.Tensor, correction: Correction
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Weights (B, T) of the policy-gradient term, the kept-token mask (B, T), statistics.

    train_logp: the trainer's log-probs before the update, engine_logp: the engine's, both
    (B, T) over response tokens; mask (B, T) marks them. Nothing here carries a gradient.
    """
    m = mask.float()
    n = m.sum().clamp(min=1.0)
    log_ratio = (train_logp.detach().float() - engine_logp.float()) * m  # (B, T)
    stats = {"mismatch": log_ratio.abs().sum() / n}
    if correction.mode == "token-truncate":
        ratio = log_ratio.clamp(max=30.0).exp()  # (B, T)
        weights = ratio.clamp(max=correction.cap) * m
        stats["capped"] = ((ratio > correction.cap).float() * m).sum() / n
        return weights, m, stats
    seq = log_ratio.sum(-1)  # (B,) log rho_i
    bound = float(torch.tensor(correction.cap).log())
    keep = (seq.abs() <= bound).float()[:, None] * m  # (B, T)
    stats["capped"] = (m - keep).sum() / n
    return keep, keep, stats
