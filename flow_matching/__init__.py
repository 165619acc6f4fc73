"""Flow-matching diffusion decoding, independent of any language model.

Conventions (diffusers): ``x_sigma = (1 - sigma) * x0 + sigma * noise``, the network predicts
``noise - x0``, sigma = 1 is pure noise. Latents are always the VAE's normalised latents.
"""

from flow_matching._loading import BuildError
from flow_matching.decoder import Decoder, DecoderConfig, apply_train_mode, build_decoder
from flow_matching.guidance import NullCondition, drop_condition
from flow_matching.loss import (
    add_noise,
    denoising_loss,
    flow_matching_loss,
    output_to_velocity,
    velocity_target,
)
from flow_matching.sampler import (
    SamplerConfig,
    cfg_weights,
    dual_guidance_weights,
    guidance_branches,
    guided_velocity,
    sample,
)
from flow_matching.timesteps import FlowMatchingConfig, sample_sigmas, shift_sigma, sigma_schedule
from flow_matching.vae import (
    VAE,
    DiffusersVAE,
    IdentityVAE,
    VAEConfig,
    build_vae,
    downsample_factor,
)

__all__ = [
    "VAE",
    "BuildError",
    "Decoder",
    "DecoderConfig",
    "DiffusersVAE",
    "FlowMatchingConfig",
    "IdentityVAE",
    "NullCondition",
    "SamplerConfig",
    "VAEConfig",
    "add_noise",
    "apply_train_mode",
    "build_decoder",
    "build_vae",
    "cfg_weights",
    "denoising_loss",
    "drop_condition",
    "downsample_factor",
    "dual_guidance_weights",
    "flow_matching_loss",
    "guidance_branches",
    "guided_velocity",
    "output_to_velocity",
    "sample",
    "sample_sigmas",
    "shift_sigma",
    "sigma_schedule",
    "velocity_target",
]
