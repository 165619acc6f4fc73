"""Rollouts: sampled responses with the token ids and log-probabilities a policy update needs.

A `Rollout` is one (prompt, response) sequence, unpadded, so rollouts of different prompts,
task types and roles can be mixed freely and re-batched in any micro-batch size. `generate`
samples them from the backbone with a LoRA head switched on, or from an inference engine
(`engine`, e.g. `reasoning.pg.http_engine.HTTPEngine`) serving the same head; `collate` packs a
list back into a left-padded batch whose response tokens are right-aligned (so one slice
selects them).
Left out on purpose: multi-turn rollouts and images in RL prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from unimodal.backbone import Backbone, Prompt
from unimodal.sampling import sample


@dataclass
class Rollout:
    """One sampled response; `key` names the advantage group (e.g. "deduction/solve")."""

    prompt_ids: torch.Tensor  # (P,) prompt tokens, no padding
    completion_ids: torch.Tensor  # (T,) response tokens, incl. the EOS token when finished
    logprobs: torch.Tensor  # (T,) log-probs of those tokens under the sampling policy
    text: str  # the decoded response (special tokens removed)
    finished: bool  # ended with EOS (False: cut at max_new_tokens)
    key: str = ""
    reward: float = 0.0
    advantage: float = 0.0
    from_engine: bool = False  # sampled by an inference engine: `logprobs` are the engine's
    weights: torch.Tensor | None = None  # (T,) importance weights of the update (None: 1)

    @property
    def length(self) -> int:
        return int(self.completion_ids.shape[0])


class Engine(Protocol):
    """Something other than the trainer's own model that samples rollouts of a head."""

    def generate(
        self,
        backbone: Backbone,
        prompts: Sequence[str],
        head: str | None,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        generator: torch.Generator | None,
    ) -> list[Rollout]: ...


@torch.no_grad()
def generate(
    backbone: Backbone,
    prompts: Sequence[str],
    head: str | None,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 16,
    generator: torch.Generator | None = None,
    static: bool = False,
    compile: bool = False,
    engine: Engine | None = None,
) -> list[Rollout]:
    """Sample one response per rendered prompt with LoRA head `head` on (None: the base model).

    `static` / `compile`: a preallocated KV cache / and a compiled decode step (`sample`);
    `engine`: sample there instead (it serves `head`; `batch_size` is the engine's business)."""
    if engine is not None:
        return engine.generate(
            backbone, prompts, head, max_new_tokens, temperature, top_p, generator
        )
    out: list[Rollout] = []
    with backbone.lora(head):
        for s in range(0, len(prompts), batch_size):
            chunk = list(prompts[s : s + batch_size])
            prompt = backbone.encode(chunk)
            res = sample(
                backbone, prompt, max_new_tokens, temperature, top_p, generator,
                static=static, compile=compile,
            )  # fmt: skip
            lengths = res.completion_mask.sum(-1).tolist()  # (B,)
            for b, n in enumerate(lengths):
                ids = res.completion_ids[b, :n].cpu()  # (T_b,)
                out.append(
                    Rollout(
                        prompt_ids=res.prompt_ids[b][res.prompt_mask[b].bool()].cpu(),
                        completion_ids=ids,
                        logprobs=res.logprobs[b, :n].float().cpu(),
                        text=backbone.tokenizer.decode(ids, skip_special_tokens=True),
                        finished=bool(res.finished[b]),
                    )
                )
    return out


@dataclass
class Batch:
    """Rollouts packed for one forward pass: sequences left-padded, responses right-aligned."""

    input_ids: torch.Tensor  # (B, L) [pad..., prompt, response]
    attention_mask: torch.Tensor  # (B, L)
    response_mask: torch.Tensor  # (B, T) 1 on response tokens (the last T_i columns of row i)
    old_logprobs: torch.Tensor  # (B, T) sampling log-probs, 0 where masked
    advantages: torch.Tensor  # (B,)
    weights: torch.Tensor  # (B, T) importance weights of the surrogate, 0 where masked

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device) for t in vars(self).values()))


def collate(rollouts: Sequence[Rollout], pad_id: int) -> Batch:
    """Left-pad whole sequences so every response ends at column L-1 (see `response_logits`)."""
    seqs = [torch.cat([r.prompt_ids, r.completion_ids]) for r in rollouts]
    n, length = len(seqs), max(s.shape[0] for s in seqs)
    t_max = max(max(r.length for r in rollouts), 1)
    ids = torch.full((n, length), pad_id, dtype=torch.long)
    attn = torch.zeros(n, length, dtype=torch.long)
    resp = torch.zeros(n, t_max, dtype=torch.long)
    old = torch.zeros(n, t_max)
    weights = torch.zeros(n, t_max)
    for i, (s, r) in enumerate(zip(seqs, rollouts)):
        ids[i, length - s.shape[0] :] = s
        attn[i, length - s.shape[0] :] = 1
        if r.length:
            resp[i, t_max - r.length :] = 1
            old[i, t_max - r.length :] = r.logprobs
            weights[i, t_max - r.length :] = 1.0 if r.weights is None else r.weights
    adv = torch.tensor([r.advantage for r in rollouts], dtype=torch.float32)
    return Batch(ids, attn, resp, old, adv, weights)


def response_logprobs(
    logits: torch.Tensor, input_ids: torch.Tensor, t: int, temperature: float, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (B, t) of the last t tokens of `input_ids` given their prefixes, from full
    logits (B, L, V); entropies (B, t) of the same distributions when asked."""
    window = logits[:, -t - 1 : -1].float() / temperature  # (B, t, V) predicts tokens L-t..L-1
    logp = torch.log_softmax(window, -1)
    token_lp = logp.gather(-1, input_ids[:, -t:, None]).squeeze(-1)  # (B, t)
    entropy = -(logp.exp() * logp).sum(-1) if with_entropy else None  # (B, t)
    return token_lp, entropy


@torch.no_grad()
def forced_rollout(
    backbone: Backbone, prompt: str, response: str, head: str | None, temperature: float = 1.0
) -> Rollout:
    """A given response as a Rollout (EOS appended), with its log-probs under head `head`.

    Trained with advantage 1, its clipped update is a supervised step (ratio 1, gradient of
    log-likelihood): used for format warm starts and scripted tests.
    """
    tok = backbone.tokenizer
    p_ids = torch.tensor(tok(prompt).input_ids)  # (P,)
    eos = backbone.eos_token_ids[-1]
    c_ids = torch.tensor(tok(response, add_special_tokens=False).input_ids + [eos])  # (T,)
    ids = torch.cat([p_ids, c_ids])[None].to(backbone.device)  # (1, P+T)
    with backbone.lora(head):
        lp, _ = backbone.token_logprobs(Prompt(ids, torch.ones_like(ids), {}), temperature)
    return Rollout(p_ids, c_ids, lp[0, -len(c_ids) :].float().cpu(), response, True)
