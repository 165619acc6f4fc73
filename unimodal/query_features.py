"""What the connector reads from the query pass: the final states, or the states of chosen
backbone layers (`gen.feature_layers`, multi-layer features as TBAC-UniImage and DeepGen 1.0
feed their decoders), optionally relative to the empty prompt (`gen.relative_queries`).

Layers count the LM's decoder layers from 1 (the first layer's output) to N (the last). Each
chosen layer's state goes through the LM's final norm (for layer N that is the usual final
state) and the chosen states are concatenated along channels, (B, Q, m * D). Layers above the
deepest chosen one do not run: `(N // 2,)` halves the cost of the query pass.

Left out on purpose: learned mixing of the layers (the connector's input projection does it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


def text_model(model: nn.Module) -> nn.Module:
    """The decoder stack (`.layers`, `.norm`) of an HF VLM or LM (its `get_decoder()`)."""
    return model.get_decoder()


def num_layers(model: nn.Module) -> int:
    return len(text_model(model).layers)


def check_layers(layers: tuple[int, ...], n: int) -> None:
    """Raise unless `layers` are strictly increasing and within 1..n."""
    if any(b <= a for a, b in zip(layers, layers[1:])) or any(not 1 <= i <= n for i in layers):
        raise ValueError(
            f"gen.feature_layers: {list(layers)} must be strictly increasing layer numbers in "
            f"1..{n} (the backbone's LM has {n} layers); empty = the final states"
        )


@contextmanager
def _capture(model: nn.Module, layers: tuple[int, ...]) -> Iterator[list[torch.Tensor]]:
    """Within: the LM runs only its first max(layers) layers, and every pass appends the
    outputs of `layers` (in order) to the yielded list."""
    lm = text_model(model)
    full = lm.layers  # `layers` were checked when the generator was built
    seen: list[torch.Tensor] = []

    def keep(_m: nn.Module, _args: tuple, out: torch.Tensor | tuple) -> None:
        seen.append(out[0] if isinstance(out, tuple) else out)

    hooks = [full[i - 1].register_forward_hook(keep) for i in layers]
    lm.layers = nn.ModuleList(list(full)[: layers[-1]])
    try:
        yield seen
    finally:
        lm.layers = full
        for h in hooks:
            h.remove()


def selected_states(
    model: nn.Module, layers: tuple[int, ...], q: int, run: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """`run()`, a query pass returning the final states at its last q positions (B, Q, D);
    with `layers`, the normed states of those layers there instead (B, Q, len(layers) * D)."""
    if not layers:
        return run()
    with _capture(model, layers) as seen:
        run()
    norm = text_model(model).norm
    return torch.cat([norm(s[:, -q:]) for s in seen[-len(layers) :]], -1)


def relative_states(
    states: list[torch.Tensor], base: list[torch.Tensor], parts: int
) -> list[torch.Tensor]:
    """Each state minus the empty prompt's, at unit RMS per token and per layer part."""
    out = []
    for h, b in zip(states, base, strict=True):
        d = (h - b).unflatten(-1, (parts, -1))  # (B, N, parts, D)
        d = d * d.pow(2).mean(-1, keepdim=True).add(1e-6).rsqrt()
        out.append(d.flatten(-2))
    return out
