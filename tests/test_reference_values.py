"""Cross-checks against the reference implementations, written out here from their source.

- TRL `GRPOTrainer._compute_loss`, `loss_type="dr_grpo"`: the token sum over
  B x max_completion_length;
- veRL `compute_reinforce_plus_plus_outcome_advantage` + `masked_whiten` (the official Absolute
  Zero code runs it once per task-role batch): token mean and Bessel-corrected token variance;
- the official Absolute Zero reward values (format error -1, wrong -0.5, correct 1, invalid -1).
"""

import pytest
import torch

from reasoning.azr import RewardConfig, proposer_reward, solver_reward
from unimodal.pg import estimate, pg_loss


def _trl_dr_grpo_loss(logp, old_logp, ref_logp, adv, mask, eps_low, eps_high, beta, max_len):
    """TRL 1.16 GRPOTrainer._compute_loss for loss_type="dr_grpo" (token-level sampling ratio)."""
    coef_1 = torch.exp(logp - old_logp)
    coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
    advantages = adv.unsqueeze(1)
    per_token_loss = -torch.min(coef_1 * advantages, coef_2 * advantages)
    per_token_kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
    per_token_loss = per_token_loss + beta * per_token_kl
    return (per_token_loss * mask).sum() / (per_token_loss.size(0) * max_len)


def _batch(seed: int, b: int = 5, t: int = 7):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(b, t, generator=g) * 3
    old = logp + torch.randn(b, t, generator=g) * 0.3  # ratios on both sides of the clip range
    ref = logp + torch.randn(b, t, generator=g) * 0.2
    adv = torch.randn(b, generator=g)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    lengths[0] = t  # the batch's longest response fills the padded width
    mask = (torch.arange(t)[None] < lengths[:, None]).float()  # (B, T) right-padded, as TRL's
    return logp, old, ref, adv, mask


@pytest.mark.parametrize("max_len", [None, 32])
def test_dr_grpo_aggregation_equals_trl(max_len):
    logp, old, ref, adv, mask = _batch(0)
    b, t = mask.shape
    want = _trl_dr_grpo_loss(logp, old, ref, adv, mask, 0.2, 0.28, 0.04, max_len or t)
    normaliser = None if max_len is None else float(b * max_len)  # default L_max: padded width
    got, _ = pg_loss(
        logp, old, adv, mask, 0.2, 0.28, "seq-mean-token-sum-norm", normaliser,
        ref_logp=ref, kl_coef=0.04,
    )  # fmt: skip
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    token_mean, _ = pg_loss(
        logp, old, adv, mask, 0.2, 0.28, "token-mean", ref_logp=ref, kl_coef=0.04
    )
    assert token_mean.item() != pytest.approx(want.item(), rel=1e-3)  # a different objective


def _verl_masked_whiten(values, mask):
    """verl.utils.torch_functional.masked_whiten (masked_mean / masked_var, unbiased)."""
    mean = (values * mask).sum() / (mask.sum() + 1e-8)
    var = ((values - mean) ** 2 * mask).sum() / (mask.sum() + 1e-8)
    var = var * (mask.sum() / (mask.sum() - 1))  # Bessel's correction over the token count
    return (values - mean) * torch.rsqrt(var + 1e-8)


def _verl_reinforce_pp(rewards, lengths, t_max):
    """veRL's REINFORCE++ outcome advantage (gamma 1): reward on the last response token."""
    mask = (torch.arange(t_max)[None] < lengths[:, None]).double()  # (B, T)
    token_rewards = torch.zeros(len(rewards), t_max, dtype=torch.float64)
    token_rewards[torch.arange(len(rewards)), lengths - 1] = rewards.double()
    returns, running = torch.zeros_like(token_rewards), torch.zeros(len(rewards)).double()
    for t in reversed(range(t_max)):
        running = token_rewards[:, t] + running
        returns[:, t] = running
        running = running * mask[:, t]
    return _verl_masked_whiten(returns, mask) * mask  # (B, T)


def test_task_relative_tokens_equals_verl_reinforce_pp_per_task_role_batch():
    g = torch.Generator().manual_seed(1)
    keys = [
        k for k in ("deduction/propose", "induction/solve", "abduction/solve") for _ in range(9)
    ]
    rewards = torch.tensor([-1.0, -0.5, 1.0, 0.25, 0.875])[torch.randint(0, 5, (27,), generator=g)]
    lengths = torch.randint(1, 40, (27,), generator=g)
    got = estimate("task_relative_tokens", rewards, keys, lengths.float())  # (N,)
    for key in set(keys):
        rows = torch.tensor([i for i, k in enumerate(keys) if k == key])
        adv = _verl_reinforce_pp(rewards[rows], lengths[rows], 40)  # (n, T): one batch per key
        first = adv[:, 0]  # every response token of a sequence carries its sequence's advantage
        assert torch.allclose(adv, first[:, None] * (adv != 0))
        assert got[rows].tolist() == pytest.approx(first.tolist(), abs=1e-5)
    per_sequence = estimate("task_relative", rewards, keys, lengths.float())
    assert not torch.allclose(per_sequence, got, atol=1e-2)  # eq. 8 as written differs


def test_paper_reward_values_by_default():
    """Absolute Zero eq. 6 / official reward manager: format -1, wrong -0.5, correct 1."""
    cfg = RewardConfig()
    assert solver_reward(False, False, cfg) == -1.0
    assert solver_reward(True, False, cfg) == -0.5
    assert solver_reward(True, True, cfg) == 1.0
    assert proposer_reward(False, False, None, cfg) == -1.0
    assert proposer_reward(True, False, None, cfg) == -1.0  # fails validation (official: -1)
    assert proposer_reward(True, True, 0.25, cfg) == 0.75
    assert proposer_reward(True, True, 1.0, cfg) == 0.0  # eq. 4 (the official code: -0.5)
