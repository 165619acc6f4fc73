"""Condition dropout for classifier-free guidance (Ho & Salimans 2022) with a learned null.

During training each row of the condition is replaced, with probability ``p``, by a null condition
so that the same network also learns the unconditional velocity. Ming-Lite-Uni uses an all-zero
null condition; here it is a parameter that starts at zero and may learn. MetaQueries drops 10%.

Left out: separate dropout of image and text parts for editing (the caller can call
``drop_condition`` once per part with its own null).
"""

import torch
from torch import nn


class NullCondition(nn.Module):
    """Learned null condition ``(L, D)``, initialised to zeros."""

    def __init__(self, num_tokens: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(num_tokens, dim))  # (L, D)

    def forward(self, batch: int) -> torch.Tensor:
        """The null condition for ``batch`` rows: ``(B, L, D)`` (a broadcast view)."""
        return self.embedding.unsqueeze(0).expand(batch, -1, -1)  # (B, L, D)


def drop_condition(
    cond: torch.Tensor,
    mask: torch.Tensor | None,
    null: torch.Tensor,
    p: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Replace each row of ``cond`` (B, L, D) by ``null`` ((L, D) or (1, L, D)) with probability p.

    Returns ``(cond, mask, keep)``: the new condition ``(B, L, D)``; the mask ``(B, L)`` with dropped
    rows set to all-valid (the null tokens are all attended, as at sampling time), or None when
    ``mask`` is None; and ``keep`` ``(B,)`` bool, True where the original row was kept. Gradients
    flow to ``null`` through the dropped rows. ``generator`` must live on ``cond.device``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"cfg dropout p: must be in [0, 1], got {p}")
    b, length, dim = cond.shape
    if tuple(null.shape) not in ((length, dim), (1, length, dim)):
        raise ValueError(
            f"null condition shape {tuple(null.shape)} does not match cond {(length, dim)}"
        )
    null = null.reshape(1, length, dim)  # (1, L, D)
    u = torch.rand(b, generator=generator, device=cond.device)  # (B,)
    keep = u >= p  # (B,)
    out = torch.where(keep[:, None, None], cond, null.to(cond.dtype))  # (B, L, D)
    if mask is not None:
        mask = torch.where(keep[:, None], mask, torch.ones_like(mask))  # (B, L)
    return out, mask, keep
