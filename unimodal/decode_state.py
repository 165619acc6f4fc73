"""Key/value state of one batched decode: a growing cache, or a static cache for `torch.compile`.

`DynamicState` appends one mask column and one cache slot per step (transformers' `DynamicCache`)
and drops finished rows at once. `StaticState` preallocates the cache and the mask for the whole
decode (transformers' `StaticCache`), so every step has the same shapes and its forward can be
compiled (CUDA graphs on a GPU); it re-packs the batch into the next power of two only when at
most half of its rows are still alive, so a compiled step sees few batch sizes.

Left out on purpose: paged attention and continuous batching across calls.
"""

from __future__ import annotations

import abc
from typing import Any

import torch

from unimodal.backbone import Backbone, Prompt


def _logits(backbone: Backbone, prompt: Prompt, pos: torch.Tensor, cache: Any) -> torch.Tensor:
    """A pass of `prompt` into `cache` -> next-token logits (b, V)."""
    out = backbone.run(prompt, position_ids=pos, cache=cache, use_cache=True)
    return backbone.model.get_output_embeddings()(out.last_hidden_state[:, -1])


def _step(backbone: Backbone, tok: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any):
    """One decode step: tokens (b, 1) -> next-token logits (b, V)."""  # fmt: skip
    return _logits(backbone, Prompt(tok, mask, {}), pos, cache)


_compiled: dict[str, Any] = {}


def compiled_step(device: torch.device):
    """`_step` under `torch.compile` (CUDA graphs on a GPU), built once per process."""
    mode = "reduce-overhead" if device.type == "cuda" else None
    if str(mode) not in _compiled:
        _compiled[str(mode)] = torch.compile(_step, mode=mode)
    return _compiled[str(mode)]


class DecodeState(abc.ABC):
    """The cache, the attention mask over it, and the prompt pass that fills it."""

    backbone: Backbone
    mask: torch.Tensor  # (b, cache length)
    cache: Any

    def prefill(self, prompt: Prompt, pos: torch.Tensor) -> torch.Tensor:
        """The prompt pass (never compiled: its length varies) -> logits (b, V)."""
        full = Prompt(prompt.input_ids, self.mask, prompt.extra)
        return _logits(self.backbone, full, pos, self.cache)

    @abc.abstractmethod
    def keep(self, alive: torch.Tensor) -> torch.Tensor | None:
        """Rows (of the computed batch) to keep, or None to keep all; `alive` (b,) bool."""

    @abc.abstractmethod
    def step(self, tok: torch.Tensor, pos: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        """Tokens (b, 1) of the rows, `alive` (b,) -> next-token logits (b, V)."""


class DynamicState(DecodeState):
    """A growing cache; finished rows leave the batch (`compact`) or stay masked."""

    def __init__(self, backbone: Backbone, prompt: Prompt, compact: bool):
        from transformers import DynamicCache

        self.backbone, self.compact = backbone, compact
        self.mask = prompt.attention_mask  # (b, L + t)
        self.cache = DynamicCache(config=backbone.model.config)

    def keep(self, alive: torch.Tensor) -> torch.Tensor | None:
        if not self.compact or bool(alive.all()):
            return None
        keep = alive.nonzero().squeeze(-1)  # (b',)
        self.cache.batch_select_indices(keep)
        self.mask = self.mask[keep]
        return keep

    def step(self, tok: torch.Tensor, pos: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, alive[:, None].to(self.mask.dtype)], 1)
        return _step(self.backbone, tok, self.mask, pos, self.cache)


class StaticState(DecodeState):
    """A preallocated cache and mask of length L + max_new_tokens; optionally compiled steps."""

    def __init__(self, backbone: Backbone, prompt: Prompt, max_new_tokens: int, compile: bool):
        from transformers import StaticCache

        b, length = prompt.input_ids.shape
        self.backbone, self.length, self.t = backbone, length, 0
        self.cache = StaticCache(
            config=backbone.model.config, max_cache_len=length + max_new_tokens
        )
        self.mask = prompt.attention_mask.new_zeros(b, length + max_new_tokens)  # (b, L + T)
        self.mask[:, :length] = prompt.attention_mask
        self.forward = compiled_step(prompt.input_ids.device) if compile else _step

    def keep(self, alive: torch.Tensor) -> torch.Tensor | None:
        """Re-pack into 2^k rows once at most half the rows are alive (dead rows pad)."""
        b, n = alive.shape[0], int(alive.sum())
        size = 1 << max(n - 1, 0).bit_length()  # the next power of two >= n
        if n == 0 or size > b // 2:
            return None
        order = torch.argsort(alive.int(), descending=True, stable=True)  # alive rows first
        keep = order[:size].sort().values  # (size,)
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[keep], layer.values[keep]
            if layer.keys.is_cuda:  # CUDA graphs then read the cache in place, not a copy
                torch._dynamo.mark_static_address(layer.keys)
                torch._dynamo.mark_static_address(layer.values)
        self.mask = self.mask[keep]
        return keep

    def step(self, tok: torch.Tensor, pos: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        self.mask[:, self.length + self.t] = alive.to(self.mask.dtype)
        self.t += 1
        return self.forward(self.backbone, tok, self.mask, pos.contiguous(), self.cache)
