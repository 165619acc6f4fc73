"""Rollouts of Flow-GRPO: G SDE samples per prompt, checker rewards, group-relative advantages.

Each prompt's conditions are computed once and shared by its G images; the trajectory keeps
every state and each step's log-probability under the sampling policy ("old" in the clipped
ratio). Log-probabilities are per latent dimension (the Gaussian's log-density divided by
C x h x w, as Flow-GRPO averages over the latent), which keeps ratios and the KL on a scale that
does not grow with the resolution. Advantages come from `unimodal.pg.grpo_advantages`, grouped
by prompt.

Left out: per-prompt reward statistics kept across steps (Flow-GRPO's stat tracker).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from flow_matching.sde import sde_sample
from unimodal.gen_rl.config import FlowGRPOConfig
from unimodal.gen_rl.policy import Conditions
from unimodal.gen_rl.prompts import TrainPrompt
from unimodal.gen_rl.reward import Score, score
from unimodal.generator import Generator
from unimodal.pg import grpo_advantages


@dataclass
class ImageRollouts:
    """One step's rollouts: N = P x G images of P prompts."""

    prompts: list[TrainPrompt]  # (P,)
    prompt_index: torch.Tensor  # (N,) the prompt row of each image
    states: torch.Tensor  # (T + 1, N, C, h, w)
    logprobs: torch.Tensor  # (N, T) per-dimension log-probs of each step, sampling policy
    sigmas: torch.Tensor  # (T + 1,)
    sigma_cap: float
    images: torch.Tensor  # (N, 3, H, W) in [-1, 1]
    scores: list[Score]  # (N,)
    rewards: torch.Tensor  # (N,)
    advantages: torch.Tensor  # (N,)

    @property
    def dims(self) -> int:
        """Latent dimensions per image (C x h x w)."""
        return self.states[0, 0].numel()


def guidance_of(gen: Generator, cfg: FlowGRPOConfig) -> float:
    """The rollouts' CFG scale: `rl.guidance`, or the model's sampler default when 0."""
    return cfg.guidance or gen.cfg.sampler.guidance


@torch.no_grad()
def collect(
    gen: Generator,
    prompts: Sequence[TrainPrompt],
    cfg: FlowGRPOConfig,
    generator: torch.Generator,
) -> ImageRollouts:
    """Sample `cfg.group_size` images per prompt with the SDE, score and normalise them."""
    g = cfg.group_size
    conds = Conditions.of(gen, [p.text for p in prompts], guidance_of(gen, cfg))
    index = torch.arange(len(prompts)).repeat_interleave(g)  # (N,)
    rows = conds.rows(index)
    device = gen.backbone.device
    noise = torch.randn(rows.latent_shape(len(index)), generator=generator, device=device)
    traj = sde_sample(
        rows.velocity,
        noise,
        steps=cfg.steps,
        noise_level=cfg.noise_level,
        shift=gen.cfg.sampler.shift,
        weights=rows.weights,
        generator=generator,
        ode_last=cfg.ode_last_step,
    )
    images = gen.vae.decode(traj.states[-1]).clamp(-1, 1).float()  # (N, 3, H, W)
    scores = [score(img, prompts[int(i)].spec) for img, i in zip(images.cpu(), index)]
    reward = [s.reward(cfg.partial_credit, cfg.stray_penalty, cfg.stray_scope) for s in scores]
    rewards = torch.tensor(reward)  # (N,)
    adv = grpo_advantages(rewards, index.tolist(), scale_std=cfg.scale_std)  # (N,)
    dims = traj.states[0, 0].numel()
    return ImageRollouts(
        list(prompts), index, traj.states, traj.logprobs / dims, traj.sigmas, traj.sigma_cap,
        images, scores, rewards, adv,
    )  # fmt: skip


def rollout_stats(ro: ImageRollouts) -> dict[str, float]:
    """Mean reward overall and per category, pass rates and the share of informative groups."""
    cats = [ro.prompts[int(i)].category for i in ro.prompt_index]
    out = {"reward": float(ro.rewards.mean())}
    for c in dict.fromkeys(cats):
        out[f"reward_{c}"] = float(ro.rewards[[k for k, x in enumerate(cats) if x == c]].mean())
    n = len(ro.scores)
    out["pass"] = sum(s.ok for s in ro.scores) / n
    out["strict_pass"] = sum(s.strict_ok for s in ro.scores) / n
    out["stray"] = sum(s.stray for s in ro.scores) / n
    spread = [bool(ro.rewards[ro.prompt_index == p].std() > 0) for p in range(len(ro.prompts))]
    out["groups_with_signal"] = sum(spread) / len(spread)
    return out
