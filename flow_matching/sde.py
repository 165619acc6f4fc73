"""The flow ODE as an SDE with the same marginals, with Gaussian transitions (Flow-GRPO, Liu et al.
2025, sec. 4.1), in this package's convention: ``x_sigma = (1 - sigma) x0 + sigma noise``, velocity
``v = dx/dsigma = noise - x0``, sampling runs from sigma = 1 down to 0 (``dt = sigma' - sigma < 0``).

For this interpolation ``E[noise | x] = x + (1 - sigma) v``, so the score is
``grad log p_sigma(x) = -(x + (1 - sigma) v) / sigma``. Adding ``(s^2 / 2) * score`` to the reverse
drift and noise of variance ``s^2 |dt|`` leaves every marginal unchanged (Fokker-Planck), which
gives the Euler-Maruyama step (Flow-GRPO eq. 9 / 11):

    x' = x + [v + s_t^2 / (2 sigma) * (x + (1 - sigma) v)] dt + s_t sqrt(-dt) eps
    s_t = a * sqrt(sigma / (1 - sigma))             (a = ``noise_level``)

so each step is ``N(mean, std^2 I)`` with a log-density the policy gradient can use. ``s_t`` is
infinite at sigma = 1; as in Flow-GRPO the denominator uses ``min(sigma, sigma_cap)`` with
``sigma_cap`` the grid's second value. With ``ode_last`` the last step is the deterministic
Euler step (no log-probability): for x-prediction it returns the network's clean estimate, not
one with the last step's noise (std ``a * sigma / sqrt(1 - sigma)``) on it. Velocities come from the caller (x-prediction converts via
``output_to_velocity``; CFG via ``guided_velocity``), so the guided velocity defines the policy.

Left out: SDE solvers above first order, the deterministic (ODE) sampler (``sampler.sample``,
still the inference default), noise schedules other than ``s_t`` above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from flow_matching.sampler import VelocityFn, guided_velocity
from flow_matching.timesteps import sigma_schedule


def sde_noise_scale(sigma: torch.Tensor, noise_level: float, sigma_cap: float) -> torch.Tensor:
    """``s_t = a * sqrt(sigma / (1 - min(sigma, sigma_cap)))`` (same shape as ``sigma``)."""
    if noise_level <= 0:
        raise ValueError(f"noise_level: must be > 0 for a stochastic step, got {noise_level}")
    return noise_level * (sigma / (1 - sigma.clamp(max=sigma_cap))).sqrt()


def sde_step(
    x: torch.Tensor,
    v: torch.Tensor,
    sigma: torch.Tensor,
    sigma_next: torch.Tensor,
    noise_level: float,
    sigma_cap: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (B, ...) and std (B, 1, ..., 1) of the Gaussian step from ``sigma`` to ``sigma_next``.

    ``x``, ``v`` (B, C, H, W); ``sigma``, ``sigma_next`` (B,) with ``0 <= sigma_next < sigma``.
    """
    shape = (-1, *([1] * (x.ndim - 1)))
    s, s_next = sigma.reshape(shape).to(x.dtype), sigma_next.reshape(shape).to(x.dtype)
    dt = s_next - s  # (B, 1, 1, 1), negative
    scale = sde_noise_scale(s, noise_level, sigma_cap)  # (B, 1, 1, 1)
    drift = v + scale**2 / (2 * s) * (x + (1 - s) * v)  # (B, C, H, W)
    return x + drift * dt, scale * (-dt).sqrt()


def gaussian_logprob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``log N(x; mean, std^2 I)`` summed over all but the batch dim: (B,), in float32."""
    x, mean, std = x.float(), mean.float(), std.float().expand_as(x)
    z = ((x - mean) / std).pow(2)
    per = -0.5 * z - std.log() - 0.5 * math.log(2 * math.pi)  # (B, C, H, W)
    return per.flatten(1).sum(1)


def gaussian_kl(mean_p: torch.Tensor, mean_q: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean_p, std^2 I) || N(mean_q, std^2 I)) = |mean_p - mean_q|^2 / (2 std^2)``: (B,)."""
    d = (mean_p.float() - mean_q.float()) / std.float()
    return 0.5 * d.pow(2).flatten(1).sum(1)


@dataclass
class SDETrajectory:
    """One batch of stochastic samples: every state and each step's log-probability."""

    states: torch.Tensor  # (T + 1, B, C, H, W): states[0] is the start noise, states[T] is x0
    logprobs: torch.Tensor  # (B, T'): log N(states[t + 1]; mean_t, std_t^2 I) of each stochastic
    # step under the sampler (T' = T, or T - 1 with ``ode_last``)
    sigmas: torch.Tensor  # (T + 1,) from 1 down to 0
    sigma_cap: float


@torch.no_grad()
def sde_sample(
    velocity_fn: VelocityFn,
    noise: torch.Tensor,
    *,
    steps: int,
    noise_level: float,
    shift: float = 1.0,
    weights: Sequence[float] = (1.0,),
    generator: torch.Generator | None = None,
    ode_last: bool = False,
) -> SDETrajectory:
    """Sample from ``noise`` (B, C, H, W) with the SDE above on the grid ``sigma_schedule``.

    ``velocity_fn`` takes the k-branch stacked batch of ``flow_matching.sampler`` (k =
    ``len(weights)``); step noise is drawn from ``generator``; ``ode_last``: see the module doc.
    """
    v_fn = guided_velocity(velocity_fn, tuple(weights))
    sigmas = sigma_schedule(steps, shift, device=noise.device, dtype=noise.dtype)  # (T + 1,)
    cap = float(sigmas[1]) if steps > 1 else 0.0
    b, x = noise.shape[0], noise
    states, logps = [x], []
    for i in range(steps):
        s, s_next = sigmas[i].expand(b), sigmas[i + 1].expand(b)
        v = v_fn(x, s)  # (B, C, H, W)
        if ode_last and i == steps - 1:
            x = x + (sigmas[i + 1] - sigmas[i]) * v
            states.append(x)
            break
        mean, std = sde_step(x, v, s, s_next, noise_level, cap)
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = mean + std * eps  # (B, C, H, W)
        states.append(x)
        logps.append(gaussian_logprob(x, mean, std))
    return SDETrajectory(torch.stack(states), torch.stack(logps, 1), sigmas, cap)
