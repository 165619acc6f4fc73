"""The root config of `tools/train_mllm.py` (stage 0: captions, VQA and code LM)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from unimodal.train.config import BackboneConfig, TrainConfig


@dataclass
class Stage0DataConfig:
    image_size: int = 64
    weights: dict[str, float] = field(
        default_factory=lambda: {"caption": 1.0, "vqa": 2.0, "code": 1.0}
    )  # mixture shares of unimodal.stage0.KINDS: caption, objects, vqa, code, recall, repeat, words
    code_path: str | None = None  # optional JSONL with a `code` field (e.g. CRUXEval)
    chunk_chars: int = 600  # code LM: source split into chunks of at most this many characters
    qa_per_image: int = 1  # VQA: questions asked (and answered, as turns) about each image
    first_weights: dict[str, float] = field(default_factory=dict)  # the mixture of the first
    first_steps: int = 0  # optimizer steps (a curriculum phase: `words` forms a copy circuit)

    def __post_init__(self) -> None:
        if self.chunk_chars < 1:
            raise ValueError(f"data.chunk_chars: must be >= 1, got {self.chunk_chars}")
        if self.qa_per_image < 1:
            raise ValueError(f"data.qa_per_image: must be >= 1, got {self.qa_per_image}")
        if self.first_steps < 0:
            raise ValueError(f"data.first_steps: must be >= 0, got {self.first_steps}")


@dataclass
class VQAEvalConfig:
    vqa_samples: int = 200
    batch_size: int = 32
    every: int = 0  # steps between small held-out VQA evaluations logged as vqa/* (0: off);
    # a multiple of train.log_every, so they land on logged rows and in curves.png
    every_samples: int = 64

    def __post_init__(self) -> None:
        if self.every < 0 or self.every_samples < 1:
            raise ValueError("eval.every must be >= 0 and eval.every_samples >= 1")


@dataclass
class Stage0TrainConfig(TrainConfig):
    """`TrainConfig` plus the stage-0 optimisation levers."""

    targets_only: bool = False  # the LM head only at positions that predict a target token
    probe_weight: float = 0.0  # vision warm-up: weight of the merged-token probe loss
    # (unimodal/vision_probe.py; 0: off, no probe)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.probe_weight < 0:
            raise ValueError(f"train.probe_weight: must be >= 0, got {self.probe_weight}")


@dataclass
class MLLMConfig:
    DEFAULT_CONFIG: ClassVar[str] = "mllm_tiny"

    model: BackboneConfig = field(default_factory=BackboneConfig)
    data: Stage0DataConfig = field(default_factory=Stage0DataConfig)
    train: Stage0TrainConfig = field(default_factory=lambda: Stage0TrainConfig(out_dir="runs/mllm"))
    eval: VQAEvalConfig = field(default_factory=VQAEvalConfig)
