"""Frozen parts of the generator in bf16 (`gen.frozen_dtype`): half the memory of the weights
that never train, fp32 kept for what does.

`cast_frozen` casts every parameter that does not require grad (the VAE, a LoRA or frozen
decoder's base weights, an external alignment encoder) and leaves trainable ones (LoRA adapters,
a fully trained decoder, queries, connector) in fp32 as the optimiser's master weights.
`frozen_autocast` runs a Generator method under bf16 autocast when its frozen parts are bf16, so
the mixed weights work the same in training, sampling and evaluation, on GPU and CPU.

Left out on purpose: fp16 (its range needs loss scaling for the trained parts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from functools import wraps
from typing import Any, TypeVar

import torch
from torch import nn

F = TypeVar("F", bound=Callable[..., Any])
FROZEN_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def cast_frozen(modules: Iterable[nn.Module | None], dtype: str) -> int:
    """Cast the parameters of `modules` that do not train to `dtype`; how many were cast."""
    target, n = FROZEN_DTYPES[dtype], 0
    for module in modules:
        for p in module.parameters() if module is not None else ():
            if not p.requires_grad and p.is_floating_point() and p.dtype != target:
                p.data = p.data.to(target)
                n += 1
    return n


def frozen_autocast(method: F) -> F:
    """A Generator method run under bf16 autocast when `gen.frozen_dtype` is bfloat16."""

    @wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        bf16 = self.cfg.frozen_dtype == "bfloat16"
        kind = self.backbone.device.type
        ctx = (
            torch.autocast(kind, dtype=torch.bfloat16) if bf16 and kind != "meta" else nullcontext()
        )
        with ctx:
            return method(self, *args, **kwargs)

    return run  # type: ignore[return-value]
