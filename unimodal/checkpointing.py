"""Activation checkpointing for the frozen backbone's query pass, and the read-only prompt cache
it relies on.

The generator backpropagates through every frozen backbone layer into the queries, so each
layer keeps its activations for the backward pass (`tools/bench.py memory` measures how much).
Hugging Face's own gradient checkpointing acts only in training mode, which the frozen backbone
never enters, and drops the KV cache the query pass reads. `checkpoint_layers` instead makes
every decoder layer recompute itself in the backward pass whenever gradients are on; only the
layer inputs are kept. `prefix_cache` serves a prompt's keys / values without storing the
queries' own, so the recomputation sees exactly what the first pass saw (a cache that grows
would hand the recomputed layer its own keys twice).

Left out on purpose: selective checkpointing (every layer or none) and CPU offload.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.cache_utils import Cache, DynamicLayer

__all__ = ["PrefixLayer", "checkpoint_layers", "prefix_cache"]


class PrefixLayer(DynamicLayer):
    """One layer's prompt keys / values (B, H, L, d); `update` returns them followed by the new
    tokens' and keeps nothing, so the same call always returns the same result."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.lazy_initialization(keys, values)
        self.keys, self.values = keys, values

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys = torch.cat([self.keys, key_states.to(self.keys.dtype)], -2)
        return keys, torch.cat([self.values, value_states.to(self.values.dtype)], -2)


def prefix_cache(keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor]) -> Cache:
    """A read-only cache over a prompt's per-layer keys / values."""
    return Cache(layers=[PrefixLayer(k, v) for k, v in zip(keys, values, strict=True)])


def checkpoint_layers(model: nn.Module) -> int:
    """Make every decoder layer of `model` (transformers' `GradientCheckpointingLayer`s) recompute
    its activations in the backward pass when gradients are on; the number of layers."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    for layer in layers:
        if not isinstance(layer.forward, partial):  # once per layer
            layer.forward = partial(_recomputed, type(layer).forward.__get__(layer))
    return len(layers)


def _recomputed(forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    cache = kwargs.get("cache")
    writes = cache is not None and not all(isinstance(x, PrefixLayer) for x in cache.layers)
    if not torch.is_grad_enabled() or writes:  # a growing cache would be written twice
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)
