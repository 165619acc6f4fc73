"""The root config of `tools/train_azr.py` (Absolute Zero self-play on one LoRA head).

`train.batch_size` counts tasks per (task type, role) per step over all processes (paper: 64);
`pg.temperature` is the sampling temperature of every role and of the log-probs; `[rl]` says
where rollouts are sampled (the trainer's model, or an engine such as vLLM) and how the engine's
log-probs are corrected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from reasoning.azr.selfplay import AZRConfig
from reasoning.pg import PGConfig
from reasoning.pg.engine import EngineConfig
from unimodal.lora_heads import LoraHeadConfig
from unimodal.train.config import BackboneConfig, TrainConfig


@dataclass
class ExecutorConfig:
    workers: int = 2
    timeout: float = 1.0


@dataclass
class HeldOutConfig:
    heldout: int = 0  # held-out deduction programs scored before and after (0: off)
    max_new_tokens: int = 256
    batch_size: int = 32


@dataclass
class AZRTrainConfig:
    DEFAULT_CONFIG: ClassVar[str] = "azr_tiny"

    model: BackboneConfig = field(default_factory=BackboneConfig)
    head: LoraHeadConfig = field(default_factory=lambda: LoraHeadConfig(name="azr"))
    azr: AZRConfig = field(default_factory=AZRConfig)
    pg: PGConfig = field(default_factory=PGConfig)
    rl: EngineConfig = field(default_factory=EngineConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    eval: HeldOutConfig = field(default_factory=HeldOutConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(out_dir="runs/azr"))
