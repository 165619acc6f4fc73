"""The root config of `tools/train_gen_rl.py`: Flow-GRPO on a supervised generator folder.

`train.batch_size` is the number of prompts per step over all processes (the RL meaning of
`unimodal.train.config`); each prompt is sampled `rl.group_size` times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from unimodal.train.config import TrainConfig

TRAIN_MODES = ("lora", "full")
STRAY_SCOPES = ("all", "pass")


@dataclass
class PolicyConfig:
    """Which weights RL trains (the rest stay as the supervised run left them)."""

    train_mode: str = "lora"  # decoder: 'lora' (new adapters on a fully trained decoder) | 'full'
    lora_rank: int = 8
    lora_alpha: float = 8.0  # the adapted modules: the decoder config's `lora_targets`
    train_conditions: bool = False  # also train the queries, connector and null conditions

    def __post_init__(self) -> None:
        if self.train_mode not in TRAIN_MODES:
            raise ValueError(f"policy.train_mode: unknown '{self.train_mode}' (lora | full)")
        if self.lora_rank < 1:
            raise ValueError(f"policy.lora_rank: must be >= 1, got {self.lora_rank}")


@dataclass
class FlowGRPOConfig:
    """Rollouts (SDE sampling), reward and the clipped objective (Flow-GRPO, Liu et al. 2025)."""

    group_size: int = 8  # images per prompt (G)
    steps: int = 10  # SDE denoising steps of a rollout (fewer than at inference)
    noise_level: float = 0.7  # a in s_t = a sqrt(sigma / (1 - sigma))
    ode_last_step: bool = False  # the last step deterministic (clean images for the reward;
    # it is not trained); false: every step stochastic, as in Flow-GRPO
    guidance: float = 0.0  # CFG scale of the rollouts; 0 = the model's sampler.guidance
    clip_low: float = 0.2
    clip_high: float = 0.2
    kl_coef: float = 0.0  # beta of the per-step Gaussian KL to the supervised reference
    minibatches: int = 1  # optimizer steps per rollout batch (each on a disjoint part of it)
    train_timesteps: int = 0  # denoising steps trained per minibatch, drawn at random from the
    # stochastic ones (Flow-GRPO's timestep fraction); 0 = all of them
    scale_std: bool = True  # GRPO; false = Dr. GRPO (advantages only centred)
    partial_credit: float = 0.0  # reward of a failed image = this x share of its spec's
    # conditions met (0: the checker's pass / fail only); a pass always scores 1
    stray_penalty: float = 0.0  # subtracted from the reward of an image with stray blobs or a
    # noisy background (`reward.has_stray`): the checker alone lets extra blobs pass
    stray_scope: str = "all"  # 'all': every stray image pays it; 'pass': only stray passes

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(f"rl.group_size: must be >= 2 (a group baseline), got {self.group_size}")  # fmt: skip
        if self.steps < 1 or self.minibatches < 1:
            raise ValueError(f"rl.steps and rl.minibatches: must be >= 1, got {self.steps}, {self.minibatches}")  # fmt: skip
        if self.train_timesteps < 0:
            raise ValueError(f"rl.train_timesteps: must be >= 0 (0 = all), got {self.train_timesteps}")  # fmt: skip
        if self.noise_level <= 0:
            raise ValueError(f"rl.noise_level: must be > 0, got {self.noise_level}")
        if not 0 <= self.partial_credit < 1:
            raise ValueError(f"rl.partial_credit: must be in [0, 1), got {self.partial_credit}")
        if self.stray_scope not in STRAY_SCOPES:
            raise ValueError(f"rl.stray_scope: unknown '{self.stray_scope}' (all | pass)")
        if self.guidance < 0 or self.kl_coef < 0 or self.stray_penalty < 0:
            raise ValueError("rl.guidance, rl.kl_coef and rl.stray_penalty: must be >= 0")


@dataclass
class RLEvalConfig:
    """Before / after scoring on held-out prompts with the deterministic (ODE) sampler."""

    n_per_category: int = 32  # 0 skips the evaluation
    batch_size: int = 48
    seed: int = 1234  # image i of the evaluation starts from noise seeded seed + i
    grid_per_category: int = 2  # before / after grid: this many held-out prompts per category


@dataclass
class GenRLConfig:
    DEFAULT_CONFIG: ClassVar[str] = "gen_rl_tiny"

    init: str = "runs/gen_tiny/final"  # the supervised generator folder (tools/train_gen.py)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    rl: FlowGRPOConfig = field(default_factory=FlowGRPOConfig)
    eval: RLEvalConfig = field(default_factory=RLEvalConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(out_dir="runs/gen_rl", steps=100, batch_size=6, lr=1e-4)
    )
