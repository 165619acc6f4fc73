"""Multi-scale representation alignment (REPA, applied per query scale as in Ming-Lite-Uni).

A 3-layer MLP projects the decoder's hidden states after block k (B, N, Dh) to the target
feature width; the loss is the negative cosine similarity per token, averaged, times lambda
(REPA uses 0.5). Targets for scale s are the backbone's query-position states (B, s*s, D),
resampled from the s x s grid to the decoder's token grid, or (`gen.align_target = 'encoder'`)
the patch features of the clean image from a frozen external encoder such as DINOv2 or SigLIP
(`unimodal.encoders`), resampled the same way.

Left out on purpose: REPA's other similarity choices (NT-Xent, L2); only cosine is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class Projector(nn.Module):
    """REPA's projector: Linear -> SiLU -> Linear -> SiLU -> Linear."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def resample_grid(feats: torch.Tensor, grid: int) -> torch.Tensor:
    """Tokens on a square grid (B, n*n, D) -> (B, grid*grid, D) by bilinear resampling."""
    n2 = feats.shape[1]
    n = int(round(n2**0.5))
    if n * n != n2:
        raise ValueError(f"expected a square token grid, got {n2} tokens")
    if n == grid:
        return feats
    x = rearrange(feats.float(), "b (h w) d -> b d h w", h=n)  # (B, D, n, n)
    x = F.interpolate(x, size=(grid, grid), mode="bilinear", align_corners=False)
    return rearrange(x, "b d h w -> b (h w) d")  # (B, grid*grid, D)


def alignment_loss(
    projected: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative cosine similarity per token; returns (loss, mean cosine). (B, N, D) each."""
    cos = F.cosine_similarity(projected.float(), target.detach().float(), dim=-1)  # (B, N)
    return -cos.mean(), cos.mean().detach()
