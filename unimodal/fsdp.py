"""Which blocks FSDP shards one by one, derived from the models themselves.

`configs/accelerate/fsdp.yaml` names no classes, so accelerate's TRANSFORMER_BASED_WRAP wraps
`model._no_split_modules` of the module given to `accelerator.prepare`. `Backbone` and
`Generator` are plain wrappers, so they expose the union of the `_no_split_modules` of the
Hugging Face / diffusers models they hold (nested ones, such as a vision tower, included).

Left out on purpose: size-based wrapping and per-family launcher configs.
"""

from __future__ import annotations

from torch import nn


def block_names(*models: nn.Module) -> list[str]:
    """Class names listed in the `_no_split_modules` of `models` (or of any submodule) that
    occur in them with weights of their own: names accelerate can find and shard."""
    present = {type(m).__name__ for m in _modules(models) if any(True for _ in m.parameters())}
    names: list[str] = []
    for m in _modules(models):
        listed = getattr(m, "_no_split_modules", None)
        for name in listed if isinstance(listed, (list, tuple, set)) else ():
            if name in present and name not in names:
                names.append(name)
    return names


def _modules(models: tuple[nn.Module, ...]) -> list[nn.Module]:
    return [m for model in models for m in model.modules()]
