"""The marginal-preserving SDE of Flow-GRPO: hand-checked Gaussian step and log-probability,
marginals equal to the ODE's on a known velocity field (seeded statistics), bad input."""

import math

import pytest
import torch

from flow_matching import sample
from flow_matching.sde import (
    gaussian_kl,
    gaussian_logprob,
    sde_noise_scale,
    sde_sample,
    sde_step,
)

MEAN = torch.tensor([1.5, -0.5]).view(1, 2, 1, 1)
STD = torch.tensor([0.5, 0.2]).view(1, 2, 1, 1)


def gaussian_velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The exact flow-matching velocity E[noise - x0 | x_sigma] for x0 ~ N(MEAN, STD^2)."""
    t = sigma.view(-1, 1, 1, 1)
    var = (1 - t) ** 2 * STD**2 + t**2  # Var x_sigma
    c = x - (1 - t) * MEAN
    return t / var * c - (MEAN + (1 - t) * STD**2 / var * c)


def test_step_and_logprob_match_a_hand_computed_gaussian():
    x = torch.tensor([0.4, -1.2, 2.0]).view(1, 3, 1, 1)
    v = torch.tensor([0.5, 0.1, -0.3]).view(1, 3, 1, 1)
    s, s_next, a = 0.6, 0.4, 0.7
    mean, std = sde_step(x, v, torch.tensor([s]), torch.tensor([s_next]), a, sigma_cap=0.9)
    scale = a * math.sqrt(s / (1 - s))  # s < cap: no capping
    dt = s_next - s
    want_mean = [
        xi + (vi + scale**2 / (2 * s) * (xi + (1 - s) * vi)) * dt
        for xi, vi in zip([0.4, -1.2, 2.0], [0.5, 0.1, -0.3])
    ]
    want_std = scale * math.sqrt(-dt)
    torch.testing.assert_close(mean.flatten(), torch.tensor(want_mean))
    torch.testing.assert_close(std.flatten(), torch.tensor([want_std]))
    y = torch.tensor([0.1, -0.9, 1.7]).view(1, 3, 1, 1)
    by_hand = sum(
        -((yi - mi) ** 2) / (2 * want_std**2) - math.log(want_std) - 0.5 * math.log(2 * math.pi)
        for yi, mi in zip([0.1, -0.9, 1.7], want_mean)
    )
    assert gaussian_logprob(y, mean, std).item() == pytest.approx(by_hand, rel=1e-5)
    normal = torch.distributions.Normal(mean, std.expand_as(mean))
    assert gaussian_logprob(y, mean, std).item() == pytest.approx(normal.log_prob(y).sum().item(), rel=1e-5)  # fmt: skip
    other = mean + 0.3
    kl = torch.distributions.kl_divergence(normal, torch.distributions.Normal(other, std.expand_as(mean)))  # fmt: skip
    assert gaussian_kl(mean, other, std).item() == pytest.approx(kl.sum().item(), rel=1e-5)


def test_noise_scale_is_capped_at_sigma_one_and_small_noise_is_the_euler_step():
    scale = sde_noise_scale(torch.tensor([1.0, 0.5]), 0.7, sigma_cap=0.9)
    torch.testing.assert_close(scale, torch.tensor([0.7 * math.sqrt(1 / 0.1), 0.7]))
    x, v = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    s, s_next = torch.tensor([0.5, 0.5]), torch.tensor([0.45, 0.45])
    mean, std = sde_step(x, v, s, s_next, 1e-6, 0.9)
    torch.testing.assert_close(mean, x + (s_next - s).view(-1, 1, 1, 1) * v)
    assert std.max() < 1e-6
    with pytest.raises(ValueError, match="noise_level"):
        sde_noise_scale(torch.tensor([0.5]), 0.0, 0.9)


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.mean((0, 2, 3)), x.std((0, 2, 3))


def test_sde_marginals_match_the_ode_on_a_known_velocity_field():
    """20k seeded samples, 100 steps: the SDE's final and mid-way marginals agree with the
    ODE's and with the exact ones; without the score correction they do not."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(20_000, 2, 1, 1, generator=g)
    traj = sde_sample(gaussian_velocity, noise, steps=100, noise_level=0.7, generator=g)
    ode = sample(gaussian_velocity, noise.shape, steps=100, noise=noise)
    sde_m, sde_s = _moments(traj.states[-1])
    ode_m, ode_s = _moments(ode)
    torch.testing.assert_close(sde_m, ode_m, atol=0.02, rtol=0)
    torch.testing.assert_close(sde_s, ode_s, atol=0, rtol=0.05)
    torch.testing.assert_close(sde_m, MEAN.flatten(), atol=0.02, rtol=0)
    torch.testing.assert_close(sde_s, STD.flatten(), atol=0, rtol=0.05)
    t = traj.sigmas[50]
    mid_m, mid_s = _moments(traj.states[50])
    torch.testing.assert_close(mid_m, ((1 - t) * MEAN).flatten(), atol=0.02, rtol=0)
    torch.testing.assert_close(mid_s, ((1 - t) ** 2 * STD**2 + t**2).sqrt().flatten(), atol=0, rtol=0.05)  # fmt: skip
    assert traj.logprobs.shape == (20_000, 100) and torch.isfinite(traj.logprobs).all()
    # Negative control: the same noise without the drift correction widens the marginals.
    x = noise
    for i in range(100):
        s, s_next = traj.sigmas[i].expand(x.shape[0]), traj.sigmas[i + 1].expand(x.shape[0])
        _, std = sde_step(x, gaussian_velocity(x, s), s, s_next, 0.7, traj.sigma_cap)
        x = x + (s_next - s).view(-1, 1, 1, 1) * gaussian_velocity(x, s) + std * torch.randn(x.shape, generator=g)  # fmt: skip
    assert (_moments(x)[1] / STD.flatten()).min() > 1.2


def test_trajectory_logprobs_are_those_of_its_own_steps():
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(4, 3, 2, 2, generator=g)
    traj = sde_sample(gaussian_velocity_3, noise, steps=3, noise_level=0.5, shift=3.0, generator=g)
    for i in range(3):
        s, s_next = traj.sigmas[i].expand(4), traj.sigmas[i + 1].expand(4)
        x = traj.states[i]
        mean, std = sde_step(x, gaussian_velocity_3(x, s), s, s_next, 0.5, traj.sigma_cap)
        torch.testing.assert_close(traj.logprobs[:, i], gaussian_logprob(traj.states[i + 1], mean, std))  # fmt: skip
    g.manual_seed(3)
    noise = torch.randn(4, 3, 2, 2, generator=g)
    last = sde_sample(gaussian_velocity_3, noise, steps=3, noise_level=0.5, shift=3.0, generator=g, ode_last=True)  # fmt: skip
    assert last.logprobs.shape == (4, 2) and last.states.shape[0] == 4
    torch.testing.assert_close(last.states[:3], traj.states[:3])  # same noise, same first steps
    x, s = last.states[2], last.sigmas[2]
    torch.testing.assert_close(last.states[3], x - s * gaussian_velocity_3(x, s.expand(4)))


def gaussian_velocity_3(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A smooth 3-channel velocity field (not a true flow; for bookkeeping checks)."""
    return torch.tanh(x) - sigma.view(-1, 1, 1, 1)
