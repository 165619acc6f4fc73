"""The SD3 / SD3.5 branch of the decoder adapter: ``SD3Transformer2DModel`` (MMDiT, Esser et al. 2024).

Joint attention over image and condition tokens. SD3's pooled vector (CLIP's pooled text
embedding in the original) is here the (masked) mean of the condition tokens; when the model's
pooled width differs from its condition width, as in every released SD3 / SD3.5 (2048 vs 4096),
a linear map starting at zero carries it over, so a loaded model starts from a constant pooled
input. Joint attention takes no key mask, so padded condition tokens are still attended (only
the pooled mean ignores them).

Left out: skip-layer guidance, ControlNet residuals, and SD3's CLIP / T5 text encoders (the
connector's condition tokens take their place).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from diffusers import SD3Transformer2DModel
from torch import nn

from flow_matching._loading import BuildError

if TYPE_CHECKING:
    from flow_matching.decoder import DecoderConfig


def sd3_kwargs(cfg: DecoderConfig) -> dict:
    """SD3-specific constructor arguments for a from-scratch model of ``DecoderConfig`` ``cfg``."""
    return dict(
        joint_attention_dim=cfg.cond_dim,
        caption_projection_dim=cfg.num_attention_heads * cfg.attention_head_dim,  # must be Dh
        pooled_projection_dim=cfg.cond_dim,  # pooled vector = mean of condition tokens
        pos_embed_max_size=cfg.pos_embed_max_size or cfg.sample_size // cfg.patch_size,
    )


def sd3_widths(transformer: SD3Transformer2DModel) -> tuple[int, float]:
    """(condition width Dc, timestep scale): SD3 feeds ``1000 * sigma``."""
    return transformer.config.joint_attention_dim, 1000.0


def pooled_projection(transformer: SD3Transformer2DModel) -> nn.Linear | None:
    """Zero-initialised map from the condition width to the pooled width, if they differ."""
    c = transformer.config
    if c.pooled_projection_dim == c.joint_attention_dim:
        return None
    proj = nn.Linear(c.joint_attention_dim, c.pooled_projection_dim)
    nn.init.zeros_(proj.weight)
    nn.init.zeros_(proj.bias)
    return proj


def check_sd3_grid(transformer: SD3Transformer2DModel, h: int, w: int) -> None:
    """Raise ``BuildError`` if a latent of ``h x w`` needs more positions than the model has."""
    p, max_side = transformer.config.patch_size, transformer.config.pos_embed_max_size
    if max(h, w) // p > max_side:
        raise BuildError(
            f"decoder.pos_embed_max_size: latent grid {h}x{w} needs {max(h, w) // p} "
            f"positions per side, the model has {max_side}"
        )


def run_sd3(
    transformer: SD3Transformer2DModel,
    x_t: torch.Tensor,
    timestep: torch.Tensor,
    cond: torch.Tensor,
    pooled: torch.Tensor,
) -> torch.Tensor:
    """Model output (B, C', H, W) for latents ``x_t``, ``cond`` (B, L, Dc), ``pooled`` (B, P)."""
    return transformer(
        x_t,
        encoder_hidden_states=cond,
        pooled_projections=pooled,
        timestep=timestep,
        return_dict=False,
    )[0]
