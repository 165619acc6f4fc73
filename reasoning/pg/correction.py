"""Engine rollouts made ready for the update: the trainer's old log-probs and importance weights.

For rollouts an inference engine sampled, `policy_step` first runs the trainer once without
gradients (the head on, in micro-batches) to get log pi_old of every response token; the
update's ratio is then taken against log pi_old, and the engine/trainer mismatch is corrected by
`unimodal.pg.importance` (token-truncate weights, or sequence-mask dropping). Sequences dropped
by the mask leave the batch before its normaliser is formed; when every one is dropped they stay
with weight 0, so each process still runs its backward (DDP needs it). Rollouts from the trainer
itself go through unchanged in value (their ratio to log pi_old is 1).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from reasoning.pg.rollout import Rollout, collate, response_logprobs
from unimodal.backbone import Backbone
from unimodal.pg.importance import Correction, importance_weights


@torch.no_grad()
def correct(
    model: Callable[..., torch.Tensor],
    backbone: Backbone,
    rollouts: Sequence[Rollout],
    temperature: float,
    micro_batch: int,
    correction: Correction,
    accelerator: Any = None,
) -> tuple[list[Rollout], dict[str, float]]:
    """Rollouts whose `logprobs` are the trainer's (head already on) and whose `weights` are the
    importance weights; dropped sequences removed. Also the mismatch statistics."""
    autocast = accelerator.autocast if accelerator is not None else contextlib.nullcontext
    out: list[tuple[Rollout, bool]] = []
    totals = {"mismatch": 0.0, "capped": 0.0}
    n_tokens = max(sum(r.length for r in rollouts), 1)
    for s in range(0, len(rollouts), micro_batch):
        chunk = list(rollouts[s : s + micro_batch])
        batch = collate(chunk, backbone.tokenizer.pad_token_id).to(backbone.device)
        t = batch.response_mask.shape[1]
        with autocast():
            logits = model(batch.input_ids, batch.attention_mask)  # (b, L, V)
            train_lp, _ = response_logprobs(logits, batch.input_ids, t, temperature, False)
        del logits
        w, keep, stats = importance_weights(
            train_lp, batch.old_logprobs, batch.response_mask, correction
        )  # (b, t), (b, t)
        share = float(batch.response_mask.sum()) / n_tokens
        for k, v in stats.items():
            totals[k] += float(v) * share
        for i, r in enumerate(chunk):
            cols = slice(t - r.length, t)
            kept = bool(keep[i, cols].any()) or r.length == 0
            lp, wi = train_lp[i, cols].float().cpu(), w[i, cols].float().cpu()
            out.append((replace(r, logprobs=lp, weights=wi), kept))
    kept = [r for r, k in out if k]
    if not kept:
        kept = [replace(r, weights=torch.zeros(r.length)) for r, _ in out]
    totals["kept"] = len([1 for _, k in out if k]) / max(len(out), 1)
    return kept, totals
