"""Policy-gradient core: advantage and loss maths by hand, rollout alignment, micro-batching."""

import math

import pytest
import torch

from reasoning.pg import PGConfig, collate, generate, policy_step, response_logprobs
from unimodal.pg import (
    aggregate,
    clipped_surrogate,
    estimate,
    group_whiten,
    grpo_advantages,
    k3_kl,
    pg_loss,
    task_relative_advantages,
)


def test_grpo_and_dr_grpo_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    g = ["a", "a", "b", "b", "b"]
    # a: mean .5, unbiased std sqrt(.5); b: mean 2/3, unbiased var 1/3
    want = [
        1 / math.sqrt(2),
        -1 / math.sqrt(2),
        -2 / 3 * math.sqrt(3),
        math.sqrt(3) / 3,
        math.sqrt(3) / 3,
    ]
    assert grpo_advantages(r, g).tolist() == pytest.approx(want, abs=1e-5)
    assert grpo_advantages(r, g, scale_std=False).tolist() == pytest.approx(
        [0.5, -0.5, -2 / 3, 1 / 3, 1 / 3]
    )


def test_task_relative_per_sequence_and_token_weighted():
    r, keys, lengths = torch.tensor([1.0, 0.0]), ["g", "g"], torch.tensor([3.0, 1.0])
    assert estimate("task_relative", r, keys, lengths).tolist() == pytest.approx(
        [1 / math.sqrt(2), -1 / math.sqrt(2)], abs=1e-5
    )
    # tokens [1, 1, 1, 0]: mean .75, unbiased var (3 * .0625 + .5625) / 3 = .25
    got = estimate("task_relative_tokens", r, keys, lengths)
    assert got.tolist() == pytest.approx([0.5, -1.5], abs=1e-5)


def test_six_group_task_relative_normalisation():
    keys = [
        f"{k}/{r}" for k in ("deduction", "abduction", "induction") for r in ("propose", "solve")
    ]
    gen = torch.Generator().manual_seed(0)
    rewards, groups = [], []
    for j, key in enumerate(keys):  # very different scales per group
        vals = torch.randn(7, generator=gen) * (j + 1) * 10 + j * 100
        rewards.append(vals)
        groups += [key] * 7
    r = torch.cat(rewards)
    a = task_relative_advantages(r, groups)
    for j in range(6):
        aj = a[j * 7 : (j + 1) * 7]
        assert abs(aj.mean().item()) < 1e-5 and aj.std().item() == pytest.approx(1.0, abs=1e-4)
    # one baseline per group: changing one group leaves the others untouched
    r2 = r.clone()
    r2[:7] += 1000
    b = task_relative_advantages(r2, groups)
    assert torch.allclose(a[7:], b[7:]) and torch.allclose(a[:7], b[:7], atol=1e-5)
    # against a single batch baseline the groups would not be centred separately
    assert not torch.allclose(group_whiten(r, [0] * len(r)), a, atol=1e-2)


def test_degenerate_groups_give_zero_advantage():
    r = torch.tensor([-1.0, -1.0, -1.0, 0.5])
    a = group_whiten(r, ["x", "x", "x", "single"])
    assert a.tolist() == [0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        group_whiten(r, ["x"])
    with pytest.raises(ValueError, match="unknown advantage"):
        estimate("ppo", r, ["x"] * 4, torch.ones(4))


def test_clipped_surrogate_separate_low_high():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.5]]))
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    loss, clipped = clipped_surrogate(logp, old, adv, clip_low=0.1, clip_high=0.3)
    # rho=1.5,A=+1 -> clip at 1.3; rho=1.5,A=-1 -> unclipped 1.5; rho=.5,A=+1 -> .5; A=-1 -> clip .9
    assert loss.tolist()[0] == pytest.approx([-1.3, 1.5, -0.5, 0.9])
    assert clipped.tolist()[0] == [1.0, 0.0, 0.0, 1.0]
    seq_adv = torch.tensor([2.0])  # (B,) broadcasts over tokens
    loss, _ = clipped_surrogate(torch.zeros(1, 3), torch.zeros(1, 3), seq_adv, 0.2, 0.2)
    assert loss.tolist()[0] == pytest.approx([-2.0, -2.0, -2.0])


def test_k3_and_aggregation_by_hand():
    logp = torch.tensor([[0.0, math.log(0.5)]])
    ref = torch.tensor([[0.0, 0.0]])
    assert k3_kl(logp, ref).tolist()[0] == pytest.approx([0.0, 2 - math.log(2) - 1])
    assert (k3_kl(torch.randn(50), torch.randn(50)) >= 0).all()
    v = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
    m = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert aggregate(v, m, "token-mean").item() == pytest.approx(2.5)
    assert aggregate(v, m, "seq-mean").item() == pytest.approx(3.0)
    assert aggregate(v, m, "token-mean", normaliser=10.0).item() == pytest.approx(1.0)
    assert aggregate(v, m, "seq-mean-token-sum-norm").item() == pytest.approx(10 / 6)  # B x T
    with pytest.raises(ValueError):
        aggregate(v, m, "sum")


def test_pg_loss_adds_kl_and_entropy_terms():
    logp = torch.log(torch.tensor([[0.5, 0.25]]))
    ref = torch.zeros(1, 2)
    ent = torch.tensor([[1.0, 3.0]])
    mask = torch.ones(1, 2)
    base, _ = pg_loss(logp, logp, torch.tensor([1.0]), mask)
    assert base.item() == pytest.approx(-1.0)
    full, stats = pg_loss(
        logp,
        logp,
        torch.tensor([1.0]),
        mask,
        ref_logp=ref,
        kl_coef=0.1,
        entropy=ent,
        entropy_coef=0.01,
    )
    kl = ((2 - math.log(2) - 1) + (4 - math.log(4) - 1)) / 2
    assert stats["kl"].item() == pytest.approx(kl) and stats["entropy"].item() == pytest.approx(2.0)
    assert full.item() == pytest.approx(-1.0 + 0.1 * kl - 0.01 * 2.0)


@pytest.fixture(scope="module")
def bb(tiny_backbone_dir):
    from unimodal.backbone import Backbone

    b = Backbone.from_pretrained(tiny_backbone_dir).freeze()
    b.add_lora("pg", r=4)
    return b


def _randomise_head(bb, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in bb.lora_parameters("pg"):
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_rollout_logprobs_match_recomputed(bb):
    _randomise_head(bb, 0)
    prompts = [
        bb.render([{"role": "user", "content": t}]) for t in ("def f(x):", "hi", "a b c d e f g")
    ]
    rolls = generate(
        bb, prompts, "pg", 12, temperature=1.0, generator=torch.Generator().manual_seed(1)
    )
    assert [r.prompt_ids.shape[0] for r in rolls] == [
        len(bb.tokenizer(p).input_ids) for p in prompts
    ]
    batch = collate(rolls, bb.tokenizer.pad_token_id)
    t = batch.response_mask.shape[1]
    with torch.no_grad(), bb.lora("pg"):
        lp, _ = response_logprobs(
            bb(batch.input_ids, batch.attention_mask), batch.input_ids, t, 1.0, False
        )
    assert torch.allclose(lp * batch.response_mask, batch.old_logprobs, atol=1e-4)
    with torch.no_grad(), bb.lora(None):  # the head matters: the base model gives other values
        lp0, _ = response_logprobs(
            bb(batch.input_ids, batch.attention_mask), batch.input_ids, t, 1.0, False
        )
    assert not torch.allclose(lp0 * batch.response_mask, batch.old_logprobs, atol=1e-3)


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean", "seq-mean-token-sum-norm"])
def test_policy_step_micro_batches_equal_full_batch(bb, aggregation):
    _randomise_head(bb, 2)
    prompts = [bb.render([{"role": "user", "content": f"x{i}" * (i + 1)}]) for i in range(4)]
    rolls = generate(bb, prompts, "pg", 8, generator=torch.Generator().manual_seed(3))
    for r, a in zip(rolls, [1.0, -0.5, 2.0, 0.0]):
        r.advantage = a
    base = {n: p.detach().clone() for n, p in bb.model.named_parameters() if "lora_" not in n}
    start = [p.detach().clone() for p in bb.lora_parameters("pg")]
    deltas = []
    for micro in (1, 4):
        with torch.no_grad():
            for p, s in zip(bb.lora_parameters("pg"), start):
                p.copy_(s)
        opt = torch.optim.SGD(bb.lora_parameters("pg"), lr=1.0)
        cfg = PGConfig(micro_batch=micro, aggregation=aggregation, max_grad_norm=0.0, kl_coef=0.01)
        stats = policy_step(bb, bb, "pg", rolls, opt, cfg)
        deltas.append([(p - s).detach() for p, s in zip(bb.lora_parameters("pg"), start)])
        assert stats["logp_diff"] < 1e-4 and stats["kl"] > 0
    assert any(d.abs().max() > 1e-6 for d in deltas[0])
    for a, b in zip(*deltas):
        assert torch.allclose(a, b, atol=1e-5)
    for n, p in bb.model.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, base[n]), n
    with pytest.raises(ValueError):
        PGConfig(aggregation="sum")


def test_dr_grpo_l_max_is_the_longest_response_or_pg_max_tokens(bb):
    _randomise_head(bb, 4)
    prompts = [bb.render([{"role": "user", "content": f"y{i}" * (i + 1)}]) for i in range(3)]
    rolls = generate(bb, prompts, "pg", 6, generator=torch.Generator().manual_seed(5))
    for r, a in zip(rolls, [1.0, -1.0, 0.5]):
        r.advantage = a
    longest = max(r.length for r in rolls)
    opt = torch.optim.SGD(bb.lora_parameters("pg"), lr=0.0)  # the head stays put
    losses = {}
    for max_tokens in (0, longest, 3 * longest):
        cfg = PGConfig(micro_batch=1, aggregation="seq-mean-token-sum-norm", max_tokens=max_tokens)
        losses[max_tokens] = policy_step(bb, bb, "pg", rolls, opt, cfg)["loss"]
    # ratio 1 everywhere: the loss is -sum_i A_i |o_i| / (B x L_max)
    want = -sum(r.advantage * r.length for r in rolls) / (len(rolls) * longest)
    assert losses[0] == pytest.approx(want, rel=1e-5) and losses[longest] == losses[0]
    assert losses[3 * longest] == pytest.approx(want / 3, rel=1e-5)
    with pytest.raises(ValueError):
        PGConfig(max_tokens=-1)
