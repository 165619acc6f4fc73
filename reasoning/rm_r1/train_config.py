"""The root config of `tools/train_rm.py`: RM-R1 stage 1 (distillation SFT) and stage 2 (GRPO).

`train.batch_size` of each stage is global per micro-step (unimodal.train.config); in the RL
stage it counts pairs, each sampled `rl.group_size` times, by the trainer's model or an engine
(`rl.engine`, `rl.engine_url`, `[rl.correction]`: `reasoning.pg.engine.EngineConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from reasoning.pg.engine import EngineConfig
from reasoning.rm_r1.grpo import GRPOConfig
from reasoning.rm_r1.judge import HeadSpec
from reasoning.rm_r1.sources import DataConfig
from unimodal.train.config import BackboneConfig, TrainConfig


@dataclass
class SFTConfig:
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(out_dir="runs/rm/sft", steps=200, lr=1e-4)
    )


@dataclass
class RLConfig(EngineConfig, GRPOConfig):
    train: TrainConfig = field(  # batch_size = pairs per step (each sampled group_size times)
        default_factory=lambda: TrainConfig(out_dir="runs/rm/rl", steps=200, lr=1e-5)
    )
    init: str = ""  # a judge head folder to start from (the SFT stage's OUT/final); "" = fresh


@dataclass
class RMEvalConfig:
    pairs: str = ""  # held-out preference file; "" = held-out procedural pairs
    n: int = 64  # pairs, each judged in both orders (greedy)
    batch_size: int = 16
    max_new_tokens: int = 256


@dataclass
class RMConfig:
    DEFAULT_CONFIG: ClassVar[str] = "rm_tiny"

    stage: str = "sft"  # sft | rl
    model: BackboneConfig = field(default_factory=BackboneConfig)
    judge: HeadSpec = field(default_factory=HeadSpec)
    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    eval: RMEvalConfig = field(default_factory=RMEvalConfig)

    def __post_init__(self) -> None:
        if self.stage not in ("sft", "rl"):
            raise ValueError(f"stage: unknown '{self.stage}' (sft | rl)")

    @property
    def train(self) -> TrainConfig:
        """The running stage's optimisation settings."""
        return self.rl.train if self.stage == "rl" else self.sft.train
