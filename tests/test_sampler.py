"""ODE samplers: exactness on a constant field, convergence orders, guidance combination, batching."""

import math

import pytest
import torch

from flow_matching import SamplerConfig, cfg_weights, dual_guidance_weights, guided_velocity, sample


def test_constant_velocity_is_integrated_exactly():
    # x_sigma = x0 + sigma * c has velocity c; Euler and Heun land on x0 for any grid.
    x0, c = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    for method in ("euler", "heun"):
        for steps, shift in ((1, 1.0), (7, 3.0)):
            out = sample(
                lambda x, s: c, x0.shape, steps=steps, method=method, shift=shift, noise=x0 + c
            )
            assert torch.allclose(out, x0, atol=1e-5)


def _error(method: str, steps: int) -> float:
    # dx/dsigma = x from sigma = 1 to 0: x(0) = x(1) * exp(-1).
    x1 = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    out = sample(
        lambda x, s: x, x1.shape, steps=steps, method=method, noise=x1, dtype=torch.float64
    )
    return abs(out.item() - math.exp(-1))


def test_euler_first_order_heun_second_order():
    euler = _error("euler", 16) / _error("euler", 32)
    heun = _error("heun", 16) / _error("heun", 32)
    assert euler == pytest.approx(2.0, rel=0.1)
    assert heun == pytest.approx(4.0, rel=0.1)
    assert _error("heun", 16) < _error("euler", 16) / 20


def test_guidance_one_equals_conditional_only():
    b = 3
    c_u, c_c = torch.randn(b, 2, 4, 4), torch.randn(b, 2, 4, 4)
    stacked = torch.cat([c_u, c_c])  # (2B, ...)

    def branches(x, s):  # a condition-dependent, state-dependent field
        return stacked - x * s[:, None, None, None]

    def cond_only(x, s):
        return c_c - x * s[:, None, None, None]

    g = torch.Generator().manual_seed(0)
    guided = sample(branches, (b, 2, 4, 4), steps=5, weights=cfg_weights(1.0), generator=g)
    g = torch.Generator().manual_seed(0)
    plain = sample(cond_only, (b, 2, 4, 4), steps=5, generator=g)
    assert torch.allclose(guided, plain, atol=1e-6)


def test_cfg_and_dual_formulas():
    b = 2
    x, s = torch.randn(b, 1, 2, 2), torch.full((b,), 0.4)
    vs = [torch.randn(b, 1, 2, 2) for _ in range(3)]

    def fn2(xx, ss):
        return torch.cat(vs[:2])

    g = 4.5
    expected = vs[0] + g * (vs[1] - vs[0])
    assert torch.allclose(guided_velocity(fn2, cfg_weights(g))(x, s), expected, atol=1e-6)

    def fn3(xx, ss):
        return torch.cat(vs)

    s_img, s_txt = 1.5, 7.0
    expected = vs[0] + s_img * (vs[1] - vs[0]) + s_txt * (vs[2] - vs[1])
    got = guided_velocity(fn3, dual_guidance_weights(s_img, s_txt))(x, s)
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize(("method", "calls_per_step"), [("euler", 1), ("heun", 2)])
def test_one_batched_call_per_evaluation(method, calls_per_step):
    b, k, steps = 2, 3, 4
    calls = []

    def fn(x, s):
        calls.append((x.clone(), s.clone()))
        return torch.zeros_like(x)

    sample(fn, (b, 1, 2, 2), steps=steps, method=method, weights=(0.2, 0.3, 0.5))
    assert len(calls) == steps * calls_per_step
    x, s = calls[0]
    assert x.shape == (k * b, 1, 2, 2) and s.shape == (k * b,)
    assert torch.equal(x[:b], x[b : 2 * b]) and torch.equal(x[:b], x[2 * b :])  # branch-major
    assert torch.all(s == 1.0)  # the first evaluation is at pure noise


def test_seeded_and_batched():
    def fn(x, s):
        return -x

    a = sample(fn, (2, 1, 3, 3), steps=3, generator=torch.Generator().manual_seed(1))
    b = sample(fn, (2, 1, 3, 3), steps=3, generator=torch.Generator().manual_seed(1))
    c = sample(fn, (2, 1, 3, 3), steps=3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # each row has its own noise


def test_sampler_config():
    cfg = SamplerConfig(guidance=3.0, image_guidance=1.2)
    assert cfg.branch_weights(1) == (1.0,)
    assert cfg.branch_weights(2) == pytest.approx((-2.0, 3.0))
    assert cfg.branch_weights(3) == pytest.approx((1 - 1.2, 1.2 - 3.0, 3.0))
    with pytest.raises(ValueError, match="sampler.method: unknown method 'rk4'"):
        SamplerConfig(method="rk4")
    with pytest.raises(ValueError, match="sampler.steps"):
        SamplerConfig(steps=0)
    with pytest.raises(ValueError, match="noise shape"):
        sample(lambda x, s: x, (1, 1, 2, 2), steps=1, noise=torch.zeros(2, 1, 2, 2))
