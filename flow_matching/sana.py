"""The SANA branch of the decoder adapter: ``SanaTransformer2DModel`` (SANA, Xie et al. 2024).

Linear self-attention, cross-attention to the condition tokens (the condition mask is
honoured), Mix-FFN; no positional embedding unless ``interpolation_scale`` is set, so any grid
divisible by the patch works. With ``pooled_cond`` the (masked) mean of the condition tokens
also enters the timestep embedding through a small MLP whose last layer starts at zero (a
loaded model starts unchanged): the global path SD3 has with its pooled projection and DiT with
adaLN class conditioning, which a small decoder learns far faster than cross-attention alone.

Left out: SANA-Sprint guidance embeddings (such folders are refused).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from diffusers import SanaTransformer2DModel
from torch import nn

from flow_matching._loading import BuildError

if TYPE_CHECKING:
    from flow_matching.decoder import DecoderConfig


def sana_kwargs(cfg: DecoderConfig) -> dict:
    """SANA-specific constructor arguments for a from-scratch model of ``DecoderConfig`` ``cfg``."""
    return dict(
        num_cross_attention_heads=cfg.num_cross_attention_heads or cfg.num_attention_heads,
        cross_attention_head_dim=cfg.cross_attention_head_dim or cfg.attention_head_dim,
        cross_attention_dim=cfg.num_attention_heads * cfg.attention_head_dim,  # projected caption
        caption_channels=cfg.cond_dim,
        mlp_ratio=cfg.mlp_ratio,
        interpolation_scale=cfg.interpolation_scale,
    )


def sana_widths(transformer: SanaTransformer2DModel) -> tuple[int, float]:
    """(condition width Dc, timestep scale): SANA feeds ``1000 * timestep_scale * sigma``."""
    c = transformer.config
    if c.guidance_embeds:
        raise BuildError(
            "decoder.pretrained: guidance-embedding (SANA-Sprint) models are unsupported"
        )
    return c.caption_channels, 1000.0 * c.timestep_scale


def pooled_offset(cond_dim: int, hidden_dim: int) -> nn.Sequential:
    """MLP from the pooled condition (B, Dc) to a timestep-embedding offset (B, Dh); its last
    layer starts at zero."""
    mlp = nn.Sequential(
        nn.Linear(cond_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim)
    )
    nn.init.zeros_(mlp[-1].weight)
    nn.init.zeros_(mlp[-1].bias)
    return mlp


def run_sana(
    transformer: SanaTransformer2DModel,
    x_t: torch.Tensor,
    timestep: torch.Tensor,
    cond: torch.Tensor,
    cond_mask: torch.Tensor | None,
) -> torch.Tensor:
    """Model output (B, C', H, W) for latents ``x_t`` given ``cond`` (B, L, Dc), mask (B, L)."""
    return transformer(
        x_t,
        encoder_hidden_states=cond,
        timestep=timestep,
        encoder_attention_mask=cond_mask,
        return_dict=False,
    )[0]
