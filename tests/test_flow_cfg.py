"""Condition dropout for classifier-free guidance and the learned null condition."""

import pytest
import torch

from flow_matching import NullCondition, drop_condition


def test_null_condition_starts_at_zero():
    null = NullCondition(5, 8)
    assert torch.equal(null.embedding, torch.zeros(5, 8))
    assert null(3).shape == (3, 5, 8)


def test_dropout_rate_and_rows():
    b, length, dim, p = 4000, 3, 4, 0.3
    cond = torch.randn(b, length, dim)
    mask = (torch.rand(b, length) > 0.5).long()
    null = torch.randn(length, dim)
    out, out_mask, keep = drop_condition(cond, mask, null, p, torch.Generator().manual_seed(0))
    assert keep.shape == (b,) and keep.dtype == torch.bool
    assert (1 - keep.float().mean()).item() == pytest.approx(p, abs=0.03)
    assert torch.equal(out[~keep], null.expand(int((~keep).sum()), -1, -1))
    assert torch.equal(out[keep], cond[keep])
    assert torch.equal(out_mask[~keep], torch.ones_like(out_mask[~keep]))
    assert torch.equal(out_mask[keep], mask[keep])


def test_dropout_extremes_shapes_and_seed():
    cond = torch.randn(6, 2, 3)
    null = torch.zeros(1, 2, 3)
    out, mask, keep = drop_condition(cond, None, null, 0.0)
    assert keep.all() and torch.equal(out, cond) and mask is None
    out, _, keep = drop_condition(cond, None, null, 1.0)
    assert not keep.any() and torch.equal(out, torch.zeros_like(cond))
    a = drop_condition(cond, None, null, 0.5, torch.Generator().manual_seed(4))[2]
    b = drop_condition(cond, None, null, 0.5, torch.Generator().manual_seed(4))[2]
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="does not match"):
        drop_condition(cond, None, torch.zeros(3, 3), 0.1)
    with pytest.raises(ValueError, match="p: must be in"):
        drop_condition(cond, None, null, 1.5)


def test_gradient_reaches_learned_null():
    null = NullCondition(2, 3)
    cond = torch.randn(8, 2, 3, requires_grad=True)
    out, _, keep = drop_condition(cond, None, null.embedding, 0.5, torch.Generator().manual_seed(1))
    assert 0 < keep.sum() < 8
    out.sum().backward()
    assert torch.equal(null.embedding.grad, torch.full((2, 3), float((~keep).sum())))
    assert torch.equal(cond.grad[keep], torch.ones_like(cond[keep]))
    assert torch.equal(cond.grad[~keep], torch.zeros_like(cond[~keep]))
