"""Held-out code LM loss: next-token cross-entropy on standard-library modules that neither the
tokenizer nor stage 0 ever saw (`unimodal.presets.HELDOUT_CODE_MODULES`)."""

from __future__ import annotations

import math

import torch

from unimodal.backbone import Backbone
from unimodal.stage0 import heldout_code, token_ce


@torch.no_grad()
def evaluate_code_loss(
    backbone: Backbone, chunk_chars: int = 600, max_chunks: int = 64, batch_size: int = 8
) -> dict:
    """Mean cross-entropy per token (and perplexity) over the first `max_chunks` chunks."""
    chunks = heldout_code(chunk_chars)[:max_chunks]
    eos = backbone.tokenizer.eos_token
    total, count = 0.0, 0.0
    for s in range(0, len(chunks), batch_size):
        prompt = backbone.encode([c + eos for c in chunks[s : s + batch_size]])
        prompt = prompt.to(backbone.device)
        logits = backbone(prompt.input_ids, prompt.attention_mask)
        ce, m = token_ce(logits, prompt.input_ids, prompt.attention_mask)
        total, count = total + float((ce * m).sum()), count + float(m.sum())
    loss = total / max(count, 1.0)
    return {"suite": "code-lm", "loss": loss, "perplexity": math.exp(loss), "tokens": int(count)}
