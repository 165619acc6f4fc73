"""RM-R1 stage 2 (RLVR) glue: G judge traces per pair, verdict rewards, GRPO advantages.

For each placed pair the judge head samples `group_size` traces (RM-R1: 7 at temperature 1.0);
each trace earns `trace_reward` (+1 when its verdict names the preferred position, -1 otherwise
or on a format failure) and the GRPO advantage (r - mean_g) / std_g within its group. The
clipped update itself (clip 0.2, k3 KL to the head-off reference) is `reasoning.pg.policy_step`,
at the same temperature the traces were sampled at (`GRPOConfig.pg`). Dr. GRPO (Liu et al.
2025) is `scale_std=False` with `aggregation="seq-mean-token-sum-norm"` (L_max = max_new_tokens).
Left out: the format-reward variants in RM-R1's released code (the paper rewards correctness
only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from reasoning.pg import PGConfig, Rollout, generate
from reasoning.pg.rollout import Engine
from reasoning.rm_r1.data import JudgeItem
from reasoning.rm_r1.prompts import PromptStyle, judge_messages
from reasoning.rm_r1.verdict import parse_verdict, verdict_reward
from unimodal.backbone import Backbone
from unimodal.pg import grpo_advantages


@dataclass
class GRPOConfig:
    """RM-R1 stage-2 settings (paper: 7 samples, clip 0.2, k3 KL 1e-3, temperature 1.0)."""

    group_size: int = 7
    clip: float = 0.2
    kl_coef: float = 1e-3
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 1024
    aggregation: str = "token-mean"  # seq-mean-token-sum-norm with scale_std False: Dr. GRPO
    scale_std: bool = True  # False: Dr. GRPO (no division by the group std)
    micro_batch: int = 8  # sequences per forward/backward in the update
    gen_batch: int = 64  # sequences sampled at once
    static_cache: bool = False  # rollouts decode into a preallocated KV cache
    compile_decode: bool = False  # ... with a compiled decode step (CUDA graphs on a GPU)

    def pg(self, max_grad_norm: float) -> PGConfig:
        """The clipped-update settings for `reasoning.pg.policy_step`."""
        return PGConfig(
            clip_low=self.clip,
            clip_high=self.clip,
            kl_coef=self.kl_coef,
            aggregation=self.aggregation,
            max_tokens=self.max_new_tokens,  # Dr. GRPO's L_max: the generation budget, as in TRL
            temperature=self.temperature,  # the rollouts' (judge_rollouts samples at it)
            micro_batch=self.micro_batch,
            max_grad_norm=max_grad_norm,
        )


def judge_rollouts(
    backbone: Backbone,
    items: Sequence[JudgeItem],
    head: str,
    style: PromptStyle,
    cfg: GRPOConfig,
    generator: torch.Generator | None = None,
    tag: str = "",
    engine: Engine | None = None,
) -> list[Rollout]:
    """Sample, reward and set GRPO advantages for `cfg.group_size` traces of every item
    (sampled by `engine` when given, e.g. vLLM serving the head)."""
    g = cfg.group_size
    texts = [
        backbone.render(judge_messages(it.pair.prompt, it.answer_a, it.answer_b, style))
        for it in items
    ]
    prompts = [t for t in texts for _ in range(g)]
    rollouts = generate(
        backbone,
        prompts,
        head,
        cfg.max_new_tokens,
        cfg.temperature,
        cfg.top_p,
        cfg.gen_batch,
        generator,
        static=cfg.static_cache,
        compile=cfg.compile_decode,
        engine=engine,
    )
    for n, r in enumerate(rollouts):
        r.key = f"{tag}/{n // g}"
        r.reward = verdict_reward(parse_verdict(r.text), items[n // g].label)
    rewards = torch.tensor([r.reward for r in rollouts])  # (N,)
    adv = grpo_advantages(rewards, [r.key for r in rollouts], scale_std=cfg.scale_std)
    for r, a in zip(rollouts, adv.tolist()):
        r.advantage = a
    return rollouts


def rollout_stats(rollouts: Sequence[Rollout], group_size: int) -> dict[str, float]:
    """Mean reward, accuracy, format failures, length, finished share, zero-signal groups."""
    n = max(len(rollouts), 1)
    fails = sum(parse_verdict(r.text) is None for r in rollouts)
    rewards = [r.reward for r in rollouts]
    groups = [rewards[s : s + group_size] for s in range(0, len(rewards), group_size)]
    return {
        "reward": sum(rewards) / n,
        "accuracy": sum(x > 0 for x in rewards) / n,
        "format_fail": fails / n,
        "length": sum(r.length for r in rollouts) / n,
        "finished": sum(r.finished for r in rollouts) / n,
        "flat_groups": sum(len(set(g)) == 1 for g in groups) / max(len(groups), 1),
    }
