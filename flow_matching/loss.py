"""Rectified-flow (flow-matching) objective in diffusers' sigma convention (SD3, Esser et al. 2024).

    x_sigma = (1 - sigma) * x0 + sigma * noise          (SD3 eq. 3 with a_t = 1 - t, b_t = t)
    target  = d x_sigma / d sigma = noise - x0          (the velocity the network predicts)
    loss    = mean_b [ w(sigma_b) * mean_{c,h,w} (pred - target)^2 ]

``w`` is diffusers' ``compute_loss_weighting_for_sd3`` ('sigma_sqrt', 'cosmap', else 1).

The network may predict the clean sample instead of the velocity (``prediction = 'sample'``, as in
"Back to Basics: Let Denoising Generative Models Denoise", Li & He 2025): its output x0_hat becomes
the velocity ``(x_sigma - x0_hat) / max(sigma, min_sigma)`` and the loss stays in velocity space.
Clean samples lie on a low-dimensional set, which a small network fits far faster than noise;
pretrained SANA / SD3 predict velocity. ``denoising_loss`` is one whole training term: sample
sigma and noise, run the decoder, score its velocity. Left out: eps prediction, per-pixel masks.
"""

from collections.abc import Callable

import torch
from diffusers.training_utils import compute_loss_weighting_for_sd3

from flow_matching.timesteps import FlowMatchingConfig, sample_sigmas

# (x_t, sigma, cond, ref=...) -> (output, hidden or None), e.g. ``flow_matching.Decoder``
DecoderFn = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]


def _per_sample(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape ``(B,)`` to ``(B, 1, ..., 1)`` so it broadcasts against ``like``."""
    return sigma.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Linear interpolation path ``x_sigma = (1 - sigma) * x0 + sigma * noise`` (sigma ``(B,)``)."""
    s = _per_sample(sigma, x0)  # (B, 1, 1, 1)
    return (1 - s) * x0 + s * noise  # (B, C, H, W)


def output_to_velocity(
    out: torch.Tensor, x_t: torch.Tensor, sigma: torch.Tensor, cfg: FlowMatchingConfig
) -> torch.Tensor:
    """The network output as a velocity: unchanged for 'velocity', converted for 'sample'."""
    if cfg.prediction == "velocity":
        return out
    s = _per_sample(sigma.float().clamp(min=cfg.min_sigma), x_t)  # (B, 1, 1, 1)
    return (x_t - out) / s  # (B, C, H, W)


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Regression target ``d x_sigma / d sigma = noise - x0``."""
    return noise - x0  # (B, C, H, W)


def flow_matching_loss(
    pred: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    sigma: torch.Tensor,
    cfg: FlowMatchingConfig,
) -> torch.Tensor:
    """Weighted MSE to ``noise - x0``: mean over all but batch, weight by ``w(sigma)``, batch mean.

    Computed in float32 whatever the dtype of ``pred``.
    """
    target = velocity_target(x0.float(), noise.float())  # (B, C, H, W)
    weight = compute_loss_weighting_for_sd3(cfg.weighting_scheme, sigma.float())  # (B,)
    per_sample = (pred.float() - target).pow(2).flatten(1).mean(dim=1)  # (B,)
    return (weight * per_sample).mean()


def denoising_loss(
    decoder: DecoderFn,
    x0: torch.Tensor,
    cond: torch.Tensor,
    cfg: FlowMatchingConfig,
    generator: torch.Generator | None = None,
    ref: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Flow-matching loss of ``decoder`` on clean latents ``x0`` (B, C, H, W) given ``cond``
    (B, L, Dc) at sampled sigmas; also the decoder's hidden states (B, N, Dh) or None."""
    sigma = sample_sigmas(cfg, x0.shape[0], generator, x0.device)  # (B,)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = add_noise(x0, noise, sigma)  # (B, C, H, W)
    out, hidden = decoder(x_t, sigma, cond, ref=ref)
    velocity = output_to_velocity(out, x_t, sigma, cfg)
    return flow_matching_loss(velocity, x0, noise, sigma, cfg), hidden
