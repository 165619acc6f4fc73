"""Connector: a small bidirectional transformer from query states to decoder condition tokens.

Input is the backbone's hidden states at one scale's query positions (B, s*s, D_backbone); a
linear map to the connector width, a learned per-scale embedding and a learned 2-D position
embedding per scale grid (initialised from a sin-cos code), `depth` pre-norm transformer
encoder layers with full (bidirectional) attention, then a projection to the decoder's caption
width. One connector serves every scale.

Left out on purpose: MetaQueries' 24-layer size (depth is a config value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from unimodal.queries import sincos_1d


@dataclass
class ConnectorConfig:
    PRESETS: ClassVar[dict[str, dict[str, int]]] = {
        "tiny": dict(depth=1, width=64, heads=4),  # the CPU default (configs/gen_tiny.toml)
        "small": dict(depth=4, width=384, heads=6),  # beside the `sana_pixel_small` decoder
    }

    depth: int = 2
    width: int = 256
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(
                f"connector.width ({self.width}) must be divisible by connector.heads ({self.heads})"
            )


class Connector(nn.Module):
    """Query states of any scale -> condition tokens, with per-scale embeddings."""

    def __init__(self, cfg: ConnectorConfig, in_dim: int, out_dim: int, scales: tuple[int, ...]):
        super().__init__()
        self.inp = nn.Linear(in_dim, cfg.width)
        self.scale_embed = nn.Parameter(torch.zeros(len(scales), cfg.width))
        self.pos = nn.ParameterList(
            nn.Parameter(
                (sincos_1d(s, cfg.width)[:, None] + sincos_1d(s, cfg.width).flip(-1)[None])
                .reshape(s * s, cfg.width)
                .mul(0.5)
            )
            for s in scales
        )
        layer = nn.TransformerEncoderLayer(
            cfg.width,
            cfg.heads,
            int(cfg.width * cfg.mlp_ratio),
            cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)
        self.out = nn.Linear(cfg.width, out_dim)

    def forward(self, states: torch.Tensor, scale_index: int) -> torch.Tensor:
        """(B, N, D_backbone) -> condition tokens (B, N, D_cond)."""
        x = self.inp(states.float()) + self.scale_embed[scale_index] + self.pos[scale_index]
        x = self.blocks(x)  # (B, N, W)
        return self.out(self.norm(x))  # (B, N, D_cond)
