"""Which blocks FSDP shards one by one, derived from the models themselves.

`configs/accelerate/fsdp.yaml` names no classes, so accelerate's TRANSFORMER_BASED_WRAP wraps
`model._no_split_modules` of the module given to `accelerator.prepare`. `Backbone` and
`Generator` are plain wrappers, so they expose the union of the `_no_split_modules` of the
Hugging Face / diffusers models they hold (nested ones, such as a vision tower, included).

`gathered` (and the method decorator `unsharded`) gives decoding outside the root's forward
(rollouts, image sampling) the full parameters.

Left out on purpose: size-based wrapping and per-family launcher configs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

from torch import nn

F = TypeVar("F", bound=Callable[..., Any])


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


@contextmanager
def gathered(model: nn.Module) -> Iterator[None]:
    """Full parameters for calls that bypass the FSDP root's forward (rollouts, decoding):
    every FSDP2 module in `model` is unsharded, and resharded on exit. A no-op without FSDP.

    Inner blocks reshard after their own forward as usual; the root's own parameters (the
    embedding, final norm, head) would otherwise stay sharded DTensors outside its forward."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch without FSDP2
        yield
        return
    sharded = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for m in sharded:
        m.unshard()
    try:
        yield
    finally:
        for m in sharded:
            m.reshard()


def unsharded(method: F) -> F:
    """A module method that runs with every FSDP2 module of `self` unsharded (`gathered`): for
    calls outside the root's forward, such as sampling."""

    @wraps(method)
    def run(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        with gathered(self):
            return method(self, *args, **kwargs)

    return run  # type: ignore[return-value]
