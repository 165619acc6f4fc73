"""Noise levels for rectified-flow training and sampling (SD3, Esser et al. 2024, sec. 3.1 / 5.3.2).

Convention (diffusers): ``sigma`` in [0, 1], sigma = 1 is pure noise, sigma = 0 is data.

- Training densities over sigma: uniform, logit-normal (SD3 eq. 19) or "mode" with heavy tails
  (SD3 eq. 20), drawn through ``diffusers.training_utils.compute_density_for_timestep_sampling``.
- Resolution shift (SD3 eq. 23): ``sigma' = shift * sigma / (1 + (shift - 1) * sigma)``, applied
  after the density so that larger images spend more time at high noise.
- Inference grid: ``linspace(1, 0, steps + 1)`` followed by the same shift.

Left out: dynamic (resolution-dependent, "mu") shifting as in Flux / SANA-1.5; pass the shift you
want for your resolution instead.
"""

from dataclasses import dataclass

import torch
from diffusers.training_utils import compute_density_for_timestep_sampling

WEIGHTING_SCHEMES = ("none", "logit_normal", "mode", "sigma_sqrt", "cosmap")
PREDICTIONS = ("velocity", "sample")


@dataclass
class FlowMatchingConfig:
    """Flow-matching training options; ``weighting_scheme`` has diffusers' meaning.

    ``logit_normal`` / ``mode`` change the sigma density (loss weight 1); ``sigma_sqrt`` / ``cosmap``
    keep the uniform density and weight the loss; ``none`` is uniform density, weight 1.
    """

    weighting_scheme: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29
    shift: float = 1.0
    prediction: str = "velocity"  # network output: 'velocity' (noise - x0) | 'sample' (x0)
    min_sigma: float = 0.05  # 'sample': velocity = (x_t - x0_hat) / max(sigma, min_sigma)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and the bad value."""
        if self.weighting_scheme not in WEIGHTING_SCHEMES:
            choices = ", ".join(repr(s) for s in WEIGHTING_SCHEMES)
            raise ValueError(
                f"flow_matching.weighting_scheme: unknown scheme {self.weighting_scheme!r}; "
                f"choose one of {choices}"
            )
        if not self.logit_std > 0:
            raise ValueError(f"flow_matching.logit_std: must be > 0, got {self.logit_std}")
        if not self.shift > 0:
            raise ValueError(f"flow_matching.shift: must be > 0, got {self.shift}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(
                f"flow_matching.prediction: unknown {self.prediction!r}; choose 'velocity' or "
                "'sample'"
            )
        if not 0 < self.min_sigma < 1:
            raise ValueError(f"flow_matching.min_sigma: must be in (0, 1), got {self.min_sigma}")


def shift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3 eq. 23: ``shift * sigma / (1 + (shift - 1) * sigma)``; keeps 0 -> 0 and 1 -> 1."""
    if shift == 1.0:
        return sigma
    return shift * sigma / (1 + (shift - 1) * sigma)


def sample_sigmas(
    cfg: FlowMatchingConfig,
    batch: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Training noise levels ``(B,)`` in (0, 1): density from ``cfg`` then the resolution shift.

    ``generator`` must live on ``device``.
    """
    u = compute_density_for_timestep_sampling(
        weighting_scheme=cfg.weighting_scheme,
        batch_size=batch,
        logit_mean=cfg.logit_mean,
        logit_std=cfg.logit_std,
        mode_scale=cfg.mode_scale,
        device=device,
        generator=generator,
    )  # (B,)
    return shift_sigma(u, cfg.shift)


def sigma_schedule(
    steps: int,
    shift: float = 1.0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Inference grid ``(steps + 1,)`` from 1 down to 0: ``shift_sigma(linspace(1, 0, steps + 1))``."""
    if steps < 1:
        raise ValueError(f"sampler.steps: must be >= 1, got {steps}")
    sigmas = torch.linspace(1.0, 0.0, steps + 1, device=device, dtype=torch.float64)
    return shift_sigma(sigmas, shift).to(dtype)  # (steps + 1,)
