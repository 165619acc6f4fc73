"""RM-R1 stage 1 (distillation) batches: judge prompt + trace, with the loss on the trace only.

Each row is the rendered judge input (chat template, generation prompt added) followed by the
trace and the end-of-turn token; the mask marks the trace and that token, so the SFT loss
(`unimodal.stage0.lm_loss`, masked next-token cross-entropy) never trains on the prompt. Rows are
left-padded like every other batch of the backbone. Left out: packing several rows into one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from reasoning.rm_r1.data import TraceExample
from reasoning.rm_r1.prompts import PromptStyle
from unimodal.backbone import Backbone, Prompt


def trace_batch(
    backbone: Backbone, examples: Sequence[TraceExample], style: PromptStyle
) -> tuple[Prompt, torch.Tensor]:
    """Tokenised rows (B, L) and the loss mask (B, L): 1 on trace tokens and the final EOS."""
    tok = backbone.tokenizer
    rows, masks = [], []
    for ex in examples:
        prompt = tok(backbone.render(ex.judge_input(style)), add_special_tokens=False)["input_ids"]
        trace = tok(ex.trace + tok.eos_token, add_special_tokens=False)["input_ids"]
        rows.append(prompt + trace)
        masks.append([0] * len(prompt) + [1] * len(trace))
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), tok.pad_token_id, dtype=torch.long)
    attn = torch.zeros(len(rows), length, dtype=torch.long)
    loss_mask = torch.zeros(len(rows), length, dtype=torch.long)
    for i, (r, m) in enumerate(zip(rows, masks)):
        ids[i, length - len(r) :] = torch.tensor(r)
        attn[i, length - len(r) :] = 1
        loss_mask[i, length - len(r) :] = torch.tensor(m)
    return Prompt(ids, attn, {}), loss_mask
