"""The Flow-GRPO policy update: the clipped surrogate over denoising steps, plus a KL to the
supervised reference.

Every denoising step t of every image is one "token" of the shared objective
(`unimodal.pg.pg_loss`, token-mean over the N x T steps): the current policy's Gaussian
transition gives log pi(x_{t+1} | x_t) (per latent dimension, as at rollout time), the ratio to
the rollout's log-prob is clipped, and the advantage is the image's group-relative one. The KL
term is the exact KL between the current and the reference Gaussian transitions (same std:
|mu - mu_ref|^2 / 2 std^2, per dimension), reduced by the shared `aggregate` (computed and
logged also when `kl_coef` is 0). Each step's loss is backpropagated on its own (the whole
batch's normaliser keeps the sum equal to the mean), so memory holds one decoder pass at a time.
The rollouts are split into `rl.minibatches` parts, one optimizer step each; from the second on
the policy is off the rollouts' and the clip acts.

With `rl.train_timesteps` = K > 0 each minibatch trains K of the stochastic steps, drawn at
random (the same K for its rows): the objective's mean over the steps, estimated at K / T of the
cost.

Left out: value baselines, several epochs over the same rollouts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from flow_matching.sampler import guided_velocity
from flow_matching.sde import gaussian_kl, gaussian_logprob, sde_step
from unimodal.gen_rl.config import FlowGRPOConfig
from unimodal.gen_rl.policy import Conditions, Reference
from unimodal.gen_rl.rollout import ImageRollouts
from unimodal.pg import aggregate, pg_loss


def _transition(conds: Conditions, ro: ImageRollouts, rows: torch.Tensor, t: int, a: float):
    """Mean and std of step t of images `rows` under the policy whose weights are active."""
    x = ro.states[t, rows]  # (b, C, h, w)
    b = x.shape[0]
    s, s_next = ro.sigmas[t].expand(b), ro.sigmas[t + 1].expand(b)
    v = guided_velocity(conds.velocity, conds.weights)(x, s)  # (b, C, h, w)
    return sde_step(x, v, s, s_next, a, ro.sigma_cap)


def step_loss(
    conds: Conditions,
    ro: ImageRollouts,
    rows: torch.Tensor,
    t: int,
    reference: Reference,
    cfg: FlowGRPOConfig,
    normaliser: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The objective's share of denoising step t for images `rows` (b,): clipped surrogate
    (shared `pg_loss`) + kl_coef x Gaussian KL to the reference; returns (loss, statistics)."""
    mean, std = _transition(conds, ro, rows, t, cfg.noise_level)
    logp = gaussian_logprob(ro.states[t + 1, rows], mean, std)[:, None] / ro.dims  # (b, 1)
    with reference.active():
        ref_mean, _ = _transition(conds, ro, rows, t, cfg.noise_level)
    kl = gaussian_kl(mean, ref_mean, std)[:, None] / ro.dims  # (b, 1)
    old = ro.logprobs[rows, t : t + 1].to(logp.device)  # (b, 1)
    adv = ro.advantages[rows].to(logp.device)  # (b,)
    mask = torch.ones_like(logp)
    loss, stats = pg_loss(logp, old, adv, mask, cfg.clip_low, cfg.clip_high, "token-mean", normaliser)  # fmt: skip
    loss = loss + cfg.kl_coef * aggregate(kl, mask, "token-mean", normaliser)
    stats["kl"] = kl.detach().mean()
    stats["ratio_dev"] = (logp - old).detach().abs().mean()
    return loss, stats


def flow_grpo_update(
    ro: ImageRollouts,
    conditions: Callable[[], Conditions],
    reference: Reference,
    params: Sequence[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    cfg: FlowGRPOConfig,
    accelerator: Any,
    clip_grad: float,
    generator: torch.Generator,
) -> dict[str, float]:
    """`cfg.minibatches` optimizer steps on the rollouts; mean statistics over all steps.

    `conditions()` gives the prompts' conditions (with gradients when they train)."""
    n, steps = ro.logprobs.shape
    order = torch.randperm(n, generator=generator)
    totals: dict[str, float] = {}
    count = 0
    for rows in order.chunk(cfg.minibatches):
        optimizer.zero_grad(set_to_none=True)
        with accelerator.autocast():  # as at rollout time
            conds = conditions()
        sub = conds.rows(ro.prompt_index[rows])
        chosen = train_steps(steps, cfg.train_timesteps, generator)
        normaliser = float(len(rows) * len(chosen))
        for j, t in enumerate(chosen):
            with accelerator.autocast():
                loss, stats = step_loss(sub, ro, rows, t, reference, cfg, normaliser)
            keep = j < len(chosen) - 1 and sub.stacked.requires_grad  # the conditions' graph
            accelerator.backward(loss, retain_graph=keep)
            for k, v in stats.items():
                totals[k] = totals.get(k, 0.0) + float(v)
            totals["loss"] = totals.get("loss", 0.0) + float(loss.detach()) * len(chosen)
            count += 1
        totals["grad_norm"] = totals.get("grad_norm", 0.0) + _step(params, optimizer, accelerator, clip_grad) * len(chosen)  # fmt: skip
    return {k: v / count for k, v in totals.items()}


def train_steps(steps: int, k: int, generator: torch.Generator) -> list[int]:
    """The denoising steps one minibatch trains: all `steps`, or `k` of them at random, sorted."""
    if k <= 0 or k >= steps:
        return list(range(steps))
    return sorted(torch.randperm(steps, generator=generator)[:k].tolist())


def _step(params, optimizer, accelerator, clip_grad: float) -> float:
    """Average gradients over processes, clip, take the optimizer step; the gradient norm."""
    if accelerator.num_processes > 1:
        for p in params:
            if p.grad is not None:
                p.grad = accelerator.reduce(p.grad, "mean")
    norm = accelerator.clip_grad_norm_(params, clip_grad) if clip_grad > 0 else torch.zeros(())
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)
