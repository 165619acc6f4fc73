"""Importance-sampling correction of engine rollouts: the maths against hand-computed values,
and its effect inside `policy_step` (a no-op for the trainer's own rollouts, weights scale the
update, masked sequences leave it)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from reasoning.pg import PGConfig, policy_step
from reasoning.pg.rollout import forced_rollout
from unimodal.backbone import Backbone
from unimodal.pg.importance import Correction, importance_weights

LN2, LN3 = math.log(2.0), math.log(3.0)


def _batch():
    """Three sequences; log(pi_old / pi_engine) per token is given in the comments."""
    train = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, 9.0], [-1.2, 0.0, 0.0]])
    engine = torch.tensor(
        [
            [-1.0, -2.0 - LN3, -0.5 + LN2],  # 0, ln 3, -ln 2
            [-0.4, -0.6, 0.0],  # 0.1, -0.1, (masked)
            [-1.2 - LN3, 0.0, 0.0],  # ln 3, (masked), (masked)
        ]
    )
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]])
    return train, engine, mask


def test_token_truncate_weights_by_hand():
    train, engine, mask = _batch()
    w, keep, stats = importance_weights(train, engine, mask, Correction("token-truncate", 2.0))
    e = math.exp
    want = torch.tensor([[1.0, 2.0, 0.5], [e(0.1), e(-0.1), 0.0], [2.0, 0.0, 0.0]])
    assert torch.allclose(w, want, atol=1e-6)
    assert torch.equal(keep, mask.float())
    assert stats["mismatch"].item() == pytest.approx((LN3 + LN2 + 0.2 + LN3) / 6, abs=1e-6)
    assert stats["capped"].item() == pytest.approx(2 / 6)  # the two tokens with ratio 3


def test_sequence_mask_drops_sequences_outside_the_band():
    train, engine, mask = _batch()
    w, keep, stats = importance_weights(train, engine, mask, Correction("sequence-mask", 2.0))
    # sequence log-ratios: ln 1.5 (kept, 1.5 <= 2), 0 (kept), ln 3 (dropped, 3 > 2)
    want = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.equal(w, want) and torch.equal(keep, want)
    assert stats["capped"].item() == pytest.approx(1 / 6)
    _, keep_wide, _ = importance_weights(train, engine, mask, Correction("sequence-mask", 4.0))
    assert torch.equal(keep_wide, mask.float())  # ratio 3 lies inside [1/4, 4]
    low = engine.clone()
    low[1, 0] = -0.3 + 1.0  # log ratio -1 - 0.1: rho = e^-1.1 < 1/2, dropped from below
    _, keep_low, _ = importance_weights(train, low, mask, Correction("sequence-mask", 2.0))
    assert keep_low[1].sum() == 0 and keep_low[0].sum() == 3


def test_bad_corrections_are_refused():
    with pytest.raises(ValueError, match="rl.correction.mode"):
        Correction("token-mask")
    with pytest.raises(ValueError, match="cap"):
        Correction(cap=1.0)


@pytest.fixture(scope="module")
def bb(tiny_backbone_dir):
    # float64: the tests compare updates computed in different micro-batch groupings, whose
    # float32 rounding (a few 1e-6 on this CPU's kernels) would blur a 1e-6 comparison
    b = Backbone.from_pretrained(tiny_backbone_dir, dtype=torch.float64).freeze()
    b.add_lora("h", 4, 8)
    with torch.no_grad():
        for p in b.lora_parameters("h"):
            p.normal_(0, 0.2)
    return b


def _update(bb: Backbone, rollouts, correction, kl: float = 0.0) -> dict[str, torch.Tensor]:
    """The change of the head's weights after one plain-SGD policy step (lr 1, no clipping)."""
    before = {k: v.clone() for k, v in bb.lora_state_dict("h").items()}
    opt = torch.optim.SGD(bb.lora_parameters("h"), lr=1.0)
    cfg = PGConfig(max_grad_norm=0.0, kl_coef=kl, micro_batch=2)
    stats = policy_step(bb, bb, "h", rollouts, opt, cfg, correction=correction)
    delta = {k: v - before[k] for k, v in bb.lora_state_dict("h").items()}
    bb.load_lora_state_dict("h", before)
    return delta | {"_stats": stats}


def _rollouts(bb: Backbone):
    pairs = [("count: 1 2 3", " 4 5"), ("say hi", " hello there"), ("x", " y z w")]
    rolls = [forced_rollout(bb, p, r, "h") for p, r in pairs]
    for r, a in zip(rolls, (1.0, -0.5, 0.7)):
        r.advantage = a
    return rolls


def _close(a: dict, b: dict, scale: float = 1.0, atol: float = 1e-6) -> bool:
    return all(torch.allclose(a[k], scale * b[k], atol=atol) for k in b if k != "_stats")


def test_policy_step_correction_is_a_noop_without_mismatch(bb):
    rolls = _rollouts(bb)
    plain = _update(bb, rolls, None, kl=1e-2)
    same = _update(bb, [replace(r, from_engine=True) for r in rolls], Correction(), kl=1e-2)
    assert _close(same, plain) and any(v.abs().max() > 0 for k, v in plain.items() if k != "_stats")
    assert same["_stats"]["is_mismatch"] < 1e-5 and same["_stats"]["is_capped"] == 0.0
    assert "is_mismatch" not in plain["_stats"]
    hf = _update(bb, rolls, Correction())  # the trainer's own rollouts: nothing to correct
    assert "is_mismatch" not in hf["_stats"]


def test_policy_step_token_weights_scale_the_update(bb):
    rolls = _rollouts(bb)
    plain = _update(bb, rolls, None)
    # the engine gave every token a third of the trainer's probability: ratio 3, capped at 2
    eng = [replace(r, from_engine=True, logprobs=r.logprobs - LN3) for r in rolls]
    capped = _update(bb, eng, Correction("token-truncate", 2.0))
    assert _close(capped, plain, scale=2.0, atol=1e-5)
    assert capped["_stats"]["is_capped"] == pytest.approx(1.0)
    assert capped["_stats"]["is_mismatch"] == pytest.approx(LN3, abs=1e-4)
    wide = _update(bb, eng, Correction("token-truncate", 5.0))  # not capped: weight 3
    assert _close(wide, plain, scale=3.0, atol=1e-5)


def test_policy_step_sequence_mask_leaves_the_dropped_out(bb):
    rolls = _rollouts(bb)
    eng = [replace(r, from_engine=True) for r in rolls]
    eng[1] = replace(eng[1], logprobs=eng[1].logprobs - 1.0)  # sequence ratio e^(T) > 2
    masked = _update(bb, eng, Correction("sequence-mask", 2.0))
    without = _update(bb, [rolls[0], rolls[2]], None)  # the normaliser counts kept tokens only
    assert _close(masked, without, atol=1e-6)
    assert masked["_stats"]["is_kept"] == pytest.approx(2 / 3)
    everything = _update(
        bb, [replace(r, logprobs=r.logprobs - 1.0) for r in eng], Correction("sequence-mask")
    )
    assert all(v.abs().max() == 0 for k, v in everything.items() if k != "_stats")
