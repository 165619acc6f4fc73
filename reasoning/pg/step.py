"""One clipped policy-gradient update of a LoRA head from a list of scored rollouts.

`policy_step` recomputes the current log-probs with the head on, and, when `kl_coef > 0` (or
`log_kl` is set, to report it; the caller decides on which updates), the reference log-probs
with every head off (`backbone.lora(None)` under no_grad: the base model *is* the reference, so
no second copy sits in memory). It runs in micro-batches whose losses share the whole batch's
normaliser (`batch_normaliser`), so the accumulated gradient equals the full-batch one, then
clips the gradient norm and takes one optimizer step. `model` is whatever computes logits from
(input_ids, attention_mask): the backbone itself or its accelerate/DDP-prepared wrapper.
Rollouts sampled by an inference engine are first given the trainer's own old log-probs and
importance weights (`correction`, see `reasoning.pg.correction`); without a correction, or with
rollouts of the trainer itself, that step is skipped (a no-op).
Left out on purpose: several PPO epochs / mini-batch steps per batch (the official AZR and
RM-R1 code take several; reasoning/azr/README.md, the RM-R1 7B config).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from reasoning.pg.correction import correct
from reasoning.pg.rollout import Batch, Rollout, collate, response_logprobs
from unimodal.backbone import Backbone
from unimodal.pg.importance import Correction
from unimodal.pg.loss import AGGREGATIONS, pg_loss


@dataclass
class PGConfig:
    """Objective, sampling temperature and update settings (defaults: AZR, no KL, clip 0.2)."""

    clip_low: float = 0.2
    clip_high: float = 0.2  # DAPO's clip-higher uses 0.28
    kl_coef: float = 0.0  # RM-R1: 1e-3 (k3 estimator)
    log_kl: int = 0  # at kl_coef 0: every N-th self-play update logs the KL to the head-off base
    entropy_coef: float = 0.0
    aggregation: str = "token-mean"  # one of unimodal.pg.loss.AGGREGATIONS
    max_tokens: int = 0  # L_max of seq-mean-token-sum-norm; 0: the batch's longest response
    temperature: float = 1.0  # rollouts are sampled, and their log-probs taken, at it
    micro_batch: int = 8  # sequences per forward/backward
    max_grad_norm: float = 1.0  # 0 disables clipping

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"pg.aggregation: unknown '{self.aggregation}' ({list(AGGREGATIONS)})")
        if self.micro_batch < 1 or self.temperature <= 0 or min(self.max_tokens, self.log_kl) < 0:
            raise ValueError(
                "pg.micro_batch must be >= 1, pg.temperature > 0, pg.max_tokens and pg.log_kl >= 0"
            )


def batch_normaliser(cfg: PGConfig, lengths: Sequence[int]) -> float:
    """The whole batch's loss denominator for `cfg.aggregation`, shared by its micro-batches."""
    if cfg.aggregation == "token-mean":
        return float(sum(lengths))
    if cfg.aggregation == "seq-mean":
        return float(len(lengths))
    return float(len(lengths) * (cfg.max_tokens or max(lengths)))  # B x L_max (Dr. GRPO)


def policy_step(
    model: Callable[..., torch.Tensor],
    backbone: Backbone,
    head: str,
    rollouts: Sequence[Rollout],
    optimizer: torch.optim.Optimizer,
    cfg: PGConfig,
    accelerator: Any = None,
    correction: Correction | None = None,
) -> dict[str, float]:
    """One clipped update of head `head` on `rollouts` (advantages already set); returns stats.

    `correction`: how rollouts with `from_engine` set are corrected (None: used as they are)."""
    if not rollouts:
        return {}
    backbone.set_lora(head)
    totals: dict[str, float] = {}
    by_len = sorted(rollouts, key=lambda r: r.prompt_ids.shape[0] + r.length)  # less padding
    if correction is not None and any(r.from_engine for r in rollouts):
        by_len, stats = correct(
            model, backbone, by_len, cfg.temperature, cfg.micro_batch, correction, accelerator
        )
        totals |= {f"is_{k}": v for k, v in stats.items()}
    normaliser = batch_normaliser(cfg, [r.length for r in by_len])
    n_tokens = float(sum(r.length for r in by_len))
    chunks = [by_len[s : s + cfg.micro_batch] for s in range(0, len(by_len), cfg.micro_batch)]
    optimizer.zero_grad(set_to_none=True)
    for c, chunk in enumerate(chunks):
        batch = collate(chunk, backbone.tokenizer.pad_token_id).to(backbone.device)
        last = c == len(chunks) - 1
        sync = accelerator.no_sync(model) if accelerator is not None and not last else None
        with sync or contextlib.nullcontext():
            loss, stats, logp = _backward(model, backbone, batch, cfg, normaliser, accelerator)
        _accumulate(totals, loss, stats, logp, batch, n_tokens)
    if cfg.max_grad_norm > 0:
        clip = accelerator.clip_grad_norm_ if accelerator is not None else _clip
        totals["grad_norm"] = float(clip(backbone.lora_parameters(head), cfg.max_grad_norm))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return totals


def _backward(
    model: Callable[..., torch.Tensor],
    backbone: Backbone,
    batch: Batch,
    cfg: PGConfig,
    normaliser: float,
    accelerator: Any,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Loss of one micro-batch (reference log-probs with every head off), backpropagated.

    Returns the loss, its statistics and the current log-probs (b, t), all detached."""
    autocast = accelerator.autocast if accelerator is not None else contextlib.nullcontext
    t = batch.response_mask.shape[1]
    ref_lp = None
    if cfg.kl_coef > 0 or cfg.log_kl:
        with torch.no_grad(), backbone.lora(None), autocast():
            ref_logits = model(batch.input_ids, batch.attention_mask)  # (b, L, V)
            ref_lp, _ = response_logprobs(ref_logits, batch.input_ids, t, cfg.temperature, False)
        del ref_logits
    with autocast():
        logits = model(batch.input_ids, batch.attention_mask)  # (b, L, V)
        logp, entropy = response_logprobs(
            logits, batch.input_ids, t, cfg.temperature, cfg.entropy_coef > 0
        )  # (b, t), (b, t) or None
        loss, stats = pg_loss(
            logp, batch.old_logprobs, batch.advantages, batch.response_mask,
            cfg.clip_low, cfg.clip_high, cfg.aggregation, normaliser,
            ref_logp=ref_lp, kl_coef=cfg.kl_coef, entropy=entropy, entropy_coef=cfg.entropy_coef,
            weights=batch.weights,
        )  # fmt: skip
    if accelerator is not None:
        accelerator.backward(loss)
    else:
        loss.backward()
    return loss.detach(), stats, logp.detach()


@torch.no_grad()
def _accumulate(
    totals: dict[str, float],
    loss: torch.Tensor,
    stats: dict[str, torch.Tensor],
    logp: torch.Tensor,
    batch: Batch,
    n_tokens: float,
) -> None:
    """Add one micro-batch's loss and token-weighted statistics to the batch totals."""
    mask = batch.response_mask  # (b, t)
    share = float(mask.sum()) / max(n_tokens, 1.0)
    totals["loss"] = totals.get("loss", 0.0) + loss.item()
    for k, v in stats.items():
        totals[k] = totals.get(k, 0.0) + float(v) * share
    diff = float(((logp - batch.old_logprobs) * mask).abs().sum())
    totals["logp_diff"] = totals.get("logp_diff", 0.0) + diff / n_tokens
    totals["logp"] = totals.get("logp", 0.0) + float((logp * mask).sum()) / n_tokens  # mean


def _clip(params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    return torch.nn.utils.clip_grad_norm_(params, max_norm)
