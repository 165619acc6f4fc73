"""Format warm start: teach a weak backbone the response format from the seed buffers.

Not in Absolute Zero, whose base models (Qwen2.5-7B and up) already follow the
`<think>`/`<answer>` format. A model trained from scratch at stage 0 almost never does, so every
reward in a group is the same format penalty, every task-relative advantage is 0, and self-play
never starts. This builds well-formed responses from tasks already in the buffers (the gold
answer for each solver role, the task itself for each proposer role) and trains them with
advantage 1 through the same clipped update (ratio 1: a log-likelihood step). Off by default.
"""

from __future__ import annotations

import random

import torch

from reasoning.azr.prompts import block, proposer_prompt, solver_prompt
from reasoning.azr.tasks import KINDS, Task, TaskBuffers
from reasoning.pg.rollout import Rollout, collate, response_logprobs
from unimodal.backbone import Backbone

THINK = "<think> Let me trace what f does step by step. </think>\n"


def _answer(*blocks: str) -> str:
    return THINK + "<answer>\n" + "\n".join(blocks) + "\n</answer>"


def warmstart_pairs(
    buffers: TaskBuffers, n: int, rng: random.Random, references: int, n_inputs: int, n_visible: int
) -> list[tuple[str, str]]:
    """`n` (user turn, well-formed response) pairs spread over the six (type, role) groups."""
    pairs: list[tuple[str, str]] = []
    for i in range(n):
        kind = KINDS[i % 3]
        pool = [
            t for t in buffers.buffers[kind] if kind != "induction" or len(t.inputs) >= n_inputs
        ]
        if not pool:
            continue
        t: Task = rng.choice(pool)
        if (i // 3) % 2 == 0:  # solver role
            gold = {"deduction": ("output", t.output), "abduction": ("input", t.input)}
            lang, body = gold.get(kind, ("python", t.program))
            pairs.append((solver_prompt(t, n_visible), _answer(block(lang, body))))
        elif kind == "induction":
            blocks = [block("input", x) for x in t.inputs[:n_inputs]] + [
                block("message", t.message)
            ]
            pairs.append((proposer_prompt(kind, [], t, n_inputs), _answer(*blocks)))
        else:
            refs = [r for r in buffers.references(kind, references + 1, rng) if r is not t]
            text = proposer_prompt(kind, refs[:references], None, n_inputs)
            pairs.append((text, _answer(block("python", t.program), block("input", t.input))))
    return pairs


@torch.no_grad()
def warmstart_rollouts(
    bb: Backbone,
    pairs: list[tuple[str, str]],
    head: str,
    temperature: float = 1.0,
    micro_batch: int = 32,
) -> list[Rollout]:
    """Teacher-forced rollouts of the pairs with advantage 1 (log-probs under `head`), scored in
    batches of `micro_batch` (the same log-probs as `forced_rollout`, one pass per batch)."""
    tok, eos = bb.tokenizer, bb.eos_token_ids[-1]
    out = []
    for user, response in pairs:
        p_ids = torch.tensor(tok(bb.render([{"role": "user", "content": user}])).input_ids)
        c_ids = torch.tensor(tok(response, add_special_tokens=False).input_ids + [eos])
        out.append(Rollout(p_ids, c_ids, torch.zeros(len(c_ids)), response, True, "warmstart"))
    for s in range(0, len(out), micro_batch):
        chunk = out[s : s + micro_batch]
        batch = collate(chunk, tok.pad_token_id).to(bb.device)
        t = batch.response_mask.shape[1]
        with bb.lora(head):
            logits = bb(batch.input_ids, batch.attention_mask)  # (b, L, V)
        lp, _ = response_logprobs(logits, batch.input_ids, t, temperature, False)  # (b, t)
        for r, row in zip(chunk, lp.float().cpu()):
            r.logprobs = row[t - r.length :]
    for r in out:
        r.reward, r.advantage = 1.0, 1.0
    return out
