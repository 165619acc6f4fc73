"""Multi-scale learnable query tokens (Ming-Lite-Uni).

Each scale s contributes an s x s grid of learnable embeddings at the backbone's width, plus a
2-D position embedding for that grid (a learnable row and column table, initialised from a
sin-cos code) and its own start/end boundary embeddings. The scales are laid out one after the
other, `[start_0, q_0 (s0*s0), end_0, start_1, ...]`, and appended after the prompt; the
backbone's final hidden states at the query positions are the condition for each scale.
Defaults 4x4, 8x8, 16x16 give 336 query tokens (342 with boundaries).

Attention among the queries (`attention`): 'causal' (the backbone's own order, as in Ming-Lite-Uni
and MetaQueries) or 'prompt' (each query sees the whole prompt and itself only). With 'causal' the
last scale's tokens spend most of their attention on the hundreds of queries before them; with
'prompt' every query reads the prompt undiluted and the connector relates the cells.

The query pass (`query_states`, `query_states_cached`) runs the frozen backbone on prompt +
queries and returns the final hidden states at the query positions, with gradients flowing
through the frozen weights into the queries; `query_states_from_kv` runs only the queries over
a prompt's precomputed keys / values (`PromptKV`, read from a cache on disk). The prompt is left-padded, so the queries sit at the
same positions in every row and see the whole prompt; `query_attention_mask` builds the mask when
the queries follow a `pattern` other than the causal order.

Left out on purpose: queries as new vocabulary rows (MetaQueries), which changes the tokenizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from unimodal.backbone import Backbone, Prompt
from unimodal.checkpointing import prefix_cache


@dataclass
class QueryConfig:
    scales: tuple[int, ...] = (4, 8, 16)
    init_std: float = 0.02
    attention: str = "causal"  # causal | prompt

    def __post_init__(self) -> None:
        if self.attention not in ("causal", "prompt"):
            raise ValueError(f"queries.attention: unknown '{self.attention}' (causal | prompt)")
        if not self.scales or any(s < 1 for s in self.scales):
            raise ValueError(f"queries.scales: need positive grid sizes, got {self.scales}")
        if len(set(self.scales)) != len(self.scales):
            raise ValueError(f"queries.scales: repeated scale in {self.scales}")


def sincos_1d(n: int, dim: int) -> torch.Tensor:
    """Fixed sin-cos code for positions 0..n-1 (n, dim)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]  # (n, 1)
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    code = torch.zeros(n, dim)
    code[:, 0::2] = torch.sin(pos * freq)
    code[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return code


class MultiScaleQueries(nn.Module):
    """Learnable queries for several grid scales with boundaries and 2-D positions."""

    def __init__(self, cfg: QueryConfig, width: int):
        super().__init__()
        self.scales = tuple(cfg.scales)
        self.attention = cfg.attention
        std = cfg.init_std
        self.queries = nn.ParameterList(
            [nn.Parameter(torch.randn(s * s, width) * std) for s in self.scales]
        )
        self.rows = nn.ParameterList([nn.Parameter(sincos_1d(s, width) * std) for s in self.scales])
        self.cols = nn.ParameterList(
            [nn.Parameter(sincos_1d(s, width).flip(-1) * std) for s in self.scales]
        )
        self.boundary = nn.Parameter(torch.randn(len(self.scales), 2, width) * std)  # (S, 2, D)
        eye = torch.eye(self.num_tokens, dtype=torch.bool)  # 'prompt': each query sees itself
        self.register_buffer("_pattern", eye if self.attention == "prompt" else None, False)

    @property
    def num_tokens(self) -> int:
        return sum(s * s + 2 for s in self.scales)

    def scale_tokens(self, k: int) -> torch.Tensor:
        """Query embeddings of scale k with its 2-D position code (s*s, D)."""
        s = self.scales[k]
        pos = (self.rows[k][:, None, :] + self.cols[k][None, :, :]).reshape(s * s, -1)
        return self.queries[k] + pos

    def forward(self, batch: int) -> torch.Tensor:
        """The whole query sequence for a batch (B, Q, D), boundaries included."""
        parts = []
        for k in range(len(self.scales)):
            parts += [self.boundary[k, :1], self.scale_tokens(k), self.boundary[k, 1:]]
        seq = torch.cat(parts, 0)  # (Q, D)
        return seq.unsqueeze(0).expand(batch, -1, -1)

    def pattern(self) -> torch.Tensor | None:
        """Which queries each query attends to (Q, Q) bool, or None for causal order."""
        return self._pattern  # built once; moves with the module

    def split(self, hidden: torch.Tensor) -> list[torch.Tensor]:
        """Hidden states at the query positions (B, Q, D) -> per-scale grids [(B, s*s, D)]."""
        out, i = [], 0
        for s in self.scales:
            out.append(hidden[:, i + 1 : i + 1 + s * s])
            i += s * s + 2
        return out


# ---------------------------------------------------------------------- the query pass
def query_states(
    backbone: Backbone, prompt: Prompt, queries: torch.Tensor, pattern: torch.Tensor | None = None
) -> torch.Tensor:
    """Run prompt + appended `queries` (B, Q, D) in one pass; their final states (B, Q, D).

    `pattern` (Q, Q) bool: which queries each query attends to (besides the whole prompt);
    None is the usual causal order. Gradients reach `queries` even when the backbone is frozen.
    """
    q = queries.shape[1]
    full = _with_placeholders(backbone, prompt, q)
    embeds = backbone.model.get_input_embeddings()(prompt.input_ids)  # (B, L, D)
    embeds = torch.cat([embeds, queries.to(embeds.dtype)], 1)  # (B, L+Q, D)
    if pattern is None:
        return backbone.run(full, inputs_embeds=embeds).last_hidden_state[:, -q:]  # (B, Q, D)
    pos = backbone.position_ids(full)
    mask = query_attention_mask(prompt.attention_mask, pattern, embeds.dtype)
    full = Prompt(full.input_ids, mask, full.extra)
    out = backbone.run(full, inputs_embeds=embeds, position_ids=pos)
    return out.last_hidden_state[:, -q:]  # (B, Q, D)


def query_states_cached(
    backbone: Backbone, prompt: Prompt, queries: torch.Tensor, pattern: torch.Tensor | None = None
) -> torch.Tensor:
    """`query_states` in two passes: the prompt once without gradient into a key/value cache,
    then only the queries through it (with gradient).

    Same states (same positions and mask), but the backward pass covers the Q queries instead
    of all L + Q tokens, and no prompt activations are kept for it.
    """
    q, n = queries.shape[1], prompt.input_ids.shape[1]
    full = _with_placeholders(backbone, prompt, q)
    pos = backbone.position_ids(full)  # (B, L+Q) or (3, B, L+Q)
    with torch.no_grad():
        cache = backbone.run(prompt, position_ids=pos[..., :n], use_cache=True).cache
    ran = [x for x in cache.layers if x.is_initialized]  # all, unless the stack is cut short
    cache = prefix_cache([x.keys for x in ran], [x.values for x in ran])
    return _query_tail(backbone, full, pos, n, cache, queries, pattern)


@dataclass
class PromptKV:
    """A left-padded text prompt batch with its keys / values precomputed (a cache on disk,
    `unimodal.gencache`): per layer (B, H, L, d), zeros at the padding."""

    prompt: Prompt
    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    def to(self, device: torch.device | str) -> PromptKV:
        move = [[t.to(device) for t in ts] for ts in (self.keys, self.values)]
        return PromptKV(self.prompt.to(device), *move)


def query_states_from_kv(
    backbone: Backbone, kv: PromptKV, queries: torch.Tensor, pattern: torch.Tensor | None = None
) -> torch.Tensor:
    """The second pass of `query_states_cached` over a precomputed prompt cache (B, Q, D)."""
    q, n = queries.shape[1], kv.prompt.input_ids.shape[1]
    full = _with_placeholders(backbone, kv.prompt, q)
    pos = backbone.position_ids(full)  # (B, L+Q)
    dtype = backbone.dtype
    cache = prefix_cache([k.to(dtype) for k in kv.keys], [v.to(dtype) for v in kv.values])
    return _query_tail(backbone, full, pos, n, cache, queries, pattern)


def query_pass(
    backbone: Backbone,
    prompt: Prompt | PromptKV,
    queries: torch.Tensor,
    pattern: torch.Tensor | None,
    prefix_cache: bool = True,
) -> torch.Tensor:
    """The query states (B, Q, D) the cheapest way: over a precomputed `PromptKV`, or (with
    `prefix_cache`, when the queries take gradients) the prompt once without gradient."""
    if isinstance(prompt, PromptKV):
        return query_states_from_kv(backbone, prompt, queries, pattern)
    if prefix_cache and torch.is_grad_enabled() and queries.requires_grad:
        return query_states_cached(backbone, prompt, queries, pattern)
    return query_states(backbone, prompt, queries, pattern)  # one pass


def _query_tail(backbone, full: Prompt, pos, n: int, cache, queries, pattern) -> torch.Tensor:
    """Only the queries (positions n..) through the prompt's read-only cache (nothing is
    written to it, so a checkpointed layer recomputes the same); their states (B, Q, D)."""
    mask = full.attention_mask
    if pattern is not None:  # the query rows of the custom mask
        mask = query_attention_mask(full.attention_mask[:, :n], pattern, backbone.dtype, True)
    tail = Prompt(full.input_ids[:, n:], mask, {})
    embeds = queries.to(backbone.dtype)  # (B, Q, D)
    out = backbone.run(tail, inputs_embeds=embeds, position_ids=pos[..., n:], cache=cache)
    return out.last_hidden_state  # (B, Q, D)


def query_attention_mask(
    prompt_mask: torch.Tensor,
    pattern: torch.Tensor,
    dtype: torch.dtype,
    queries_only: bool = False,
) -> torch.Tensor:
    """Additive 4-D mask (B, 1, L+Q, L+Q): causal over the (left-padded) prompt, every query
    sees the whole prompt and the queries `pattern` (Q, Q) allows. Each position also sees
    itself, so padding rows are never empty. `queries_only`: just the queries' rows
    (B, 1, Q, L+Q), as a pass over a cached prompt needs."""
    b, n = prompt_mask.shape
    q = pattern.shape[0]
    t, dev = n + q, prompt_mask.device
    rows = torch.arange(n if queries_only else 0, t, device=dev)[:, None]  # (R, 1)
    cols = torch.arange(t, device=dev)[None]  # (1, T)
    allowed = cols <= rows  # (R, T) causal
    allowed[-q:, n:] = pattern.to(dev)
    keys = torch.cat([prompt_mask.bool(), prompt_mask.new_ones(b, q).bool()], 1)  # (B, T)
    allowed = (allowed[None] & keys[:, None, :]) | (cols == rows)[None]  # (B, R, T)
    zero = torch.zeros((), dtype=dtype, device=dev)
    return torch.where(allowed, zero, torch.finfo(dtype).min)[:, None]  # (B, 1, R, T)


def _with_placeholders(backbone: Backbone, prompt: Prompt, q: int) -> Prompt:
    """The prompt followed by q placeholder (pad) tokens that attend and count as text."""
    b = prompt.input_ids.shape[0]
    pad = backbone.tokenizer.pad_token_id
    ids = torch.cat([prompt.input_ids, prompt.input_ids.new_full((b, q), pad)], 1)  # (B, L+Q)
    mask = torch.cat([prompt.attention_mask, prompt.attention_mask.new_ones(b, q)], 1)
    extra = dict(prompt.extra)
    if "mm_token_type_ids" in extra:
        mm = extra["mm_token_type_ids"]
        extra["mm_token_type_ids"] = torch.cat([mm, mm.new_zeros(b, q)], 1)  # (B, L+Q)
    return Prompt(ids, mask, extra)


def encode_prompts(
    backbone: Backbone, prefix: str, texts: list[str], images: list[list] | None = None
) -> Prompt:
    """Each text (after `prefix`, with its images first) as a one-turn user chat, tokenised."""
    convs = []
    for i, t in enumerate(texts):
        content: list = [{"type": "image"} for _ in (images[i] if images else [])]
        content.append({"type": "text", "text": prefix + t})
        convs.append([{"role": "user", "content": content}])
    return backbone.encode_chat(convs, images)
