"""Flow-matching maths against hand-computed values: path, target, loss, weighting, shift, densities."""

import math

import pytest
import torch

from flow_matching import (
    FlowMatchingConfig,
    add_noise,
    flow_matching_loss,
    output_to_velocity,
    sample_sigmas,
    shift_sigma,
    sigma_schedule,
    velocity_target,
)


def test_add_noise_hand_values():
    x0 = torch.tensor([1.0, 2.0]).reshape(1, 1, 1, 2)
    noise = torch.tensor([3.0, -1.0]).reshape(1, 1, 1, 2)
    out = add_noise(x0, noise, torch.tensor([0.25]))
    # 0.75 * 1 + 0.25 * 3 = 1.5 ; 0.75 * 2 + 0.25 * -1 = 1.25
    assert torch.allclose(out.flatten(), torch.tensor([1.5, 1.25]))


def test_add_noise_endpoints_and_per_sample_sigma():
    x0, noise = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    out = add_noise(x0, noise, torch.tensor([0.0, 1.0]))
    assert torch.equal(out[0], x0[0])  # sigma = 0 is data
    assert torch.equal(out[1], noise[1])  # sigma = 1 is pure noise


def test_target_is_path_derivative():
    x0, noise = (
        torch.randn(1, 2, 3, 3, dtype=torch.float64),
        torch.randn(1, 2, 3, 3, dtype=torch.float64),
    )
    s, h = torch.tensor([0.3], dtype=torch.float64), 1e-6
    fd = (add_noise(x0, noise, s + h) - add_noise(x0, noise, s)) / h
    assert torch.allclose(fd, velocity_target(x0, noise), atol=1e-6)
    assert torch.equal(velocity_target(x0, noise), noise - x0)


def test_loss_hand_values_and_batch_mean():
    x0 = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).reshape(2, 1, 1, 2)
    noise = torch.tensor([[2.0, 3.0], [1.0, -1.0]]).reshape(2, 1, 1, 2)
    pred = torch.zeros(2, 1, 1, 2)
    sigma = torch.tensor([0.5, 0.5])
    # target = noise - x0: [[1, 2], [1, -1]] -> per-sample MSE [2.5, 1.0] -> mean 1.75
    loss = flow_matching_loss(pred, x0, noise, sigma, FlowMatchingConfig(weighting_scheme="none"))
    assert loss.item() == pytest.approx(1.75)
    target = noise - x0
    zero = flow_matching_loss(target, x0, noise, sigma, FlowMatchingConfig())
    assert zero.item() == 0.0


@pytest.mark.parametrize(
    ("scheme", "weights"),
    [
        ("sigma_sqrt", (1 / 0.25**2, 1 / 0.5**2)),  # sigma^-2
        ("cosmap", (2 / (math.pi * (1 - 0.5 + 2 * 0.0625)), 2 / (math.pi * 0.5))),
        ("logit_normal", (1.0, 1.0)),
    ],
)
def test_loss_weighting(scheme, weights):
    x0 = torch.zeros(2, 1, 1, 1)
    noise = torch.ones(2, 1, 1, 1)
    pred = torch.zeros(2, 1, 1, 1)  # squared error 1 per sample
    loss = flow_matching_loss(
        pred, x0, noise, torch.tensor([0.25, 0.5]), FlowMatchingConfig(scheme)
    )
    assert loss.item() == pytest.approx(sum(weights) / 2, rel=1e-5)


def test_shift_formula():
    s = torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(shift_sigma(s, 3.0), torch.tensor([0.0, 0.75, 1.0]))  # 1.5 / 2
    assert torch.equal(shift_sigma(s, 1.0), s)
    grid = torch.linspace(0, 1, 50)
    assert (shift_sigma(grid, 3.0).diff() > 0).all()  # monotone
    assert (shift_sigma(grid[1:-1], 3.0) > grid[1:-1]).all()  # shift > 1 moves towards noise


def test_sigma_schedule():
    assert torch.allclose(sigma_schedule(4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    shifted = sigma_schedule(2, shift=3.0)
    assert torch.allclose(shifted, torch.tensor([1.0, 0.75, 0.0]))
    with pytest.raises(ValueError, match="sampler.steps"):
        sigma_schedule(0)


def test_sample_sigmas_densities_and_seed():
    g = torch.Generator().manual_seed(0)
    uni = sample_sigmas(FlowMatchingConfig("none"), 4000, g)
    assert uni.shape == (4000,) and uni.min() >= 0 and uni.max() <= 1
    assert uni.mean().item() == pytest.approx(0.5, abs=0.02)
    ln = sample_sigmas(FlowMatchingConfig("logit_normal", logit_mean=1.0), 4000, g)
    assert ln.median().item() == pytest.approx(1 / (1 + math.exp(-1)), abs=0.03)
    mode = sample_sigmas(FlowMatchingConfig("mode"), 100, g)
    assert mode.min() >= 0 and mode.max() <= 1
    a = sample_sigmas(FlowMatchingConfig("none"), 8, torch.Generator().manual_seed(3))
    b = sample_sigmas(FlowMatchingConfig("none", shift=3.0), 8, torch.Generator().manual_seed(3))
    assert torch.allclose(b, shift_sigma(a, 3.0))


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"flow_matching.weighting_scheme: unknown scheme 'foo'"):
        FlowMatchingConfig(weighting_scheme="foo")
    with pytest.raises(ValueError, match="flow_matching.shift"):
        FlowMatchingConfig(shift=0.0)
    with pytest.raises(ValueError, match="flow_matching.logit_std"):
        FlowMatchingConfig(logit_std=-1.0)
    with pytest.raises(ValueError, match="flow_matching.prediction: unknown 'eps'"):
        FlowMatchingConfig(prediction="eps")
    with pytest.raises(ValueError, match="flow_matching.min_sigma"):
        FlowMatchingConfig(min_sigma=0.0)


def test_sample_prediction_becomes_the_velocity():
    """x0 prediction: the exact clean sample gives the exact target; sigma is clamped below."""
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 4, 4, generator=g)
    sigma = torch.tensor([0.2, 0.5, 0.9])
    x_t = add_noise(x0, noise, sigma)
    cfg = FlowMatchingConfig(prediction="sample", min_sigma=0.05)
    v = output_to_velocity(x0, x_t, sigma, cfg)
    assert torch.allclose(v, velocity_target(x0, noise), atol=1e-5)
    assert output_to_velocity(x0, x_t, sigma, FlowMatchingConfig()) is x0  # velocity: as is
    # hand value: x_t = 1, x0_hat = 0, sigma = 0.01 -> clamped to 0.05 -> v = 20
    one = torch.ones(1, 1, 1, 1)
    v = output_to_velocity(torch.zeros_like(one), one, torch.tensor([0.01]), cfg)
    assert v.item() == pytest.approx(20.0)
