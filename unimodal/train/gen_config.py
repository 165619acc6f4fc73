"""The root config of `tools/train_gen.py` (here, not in the tool, so benchmarks can use it).

Defaults are neutral: the embedded CPU run is `configs/gen_tiny.toml` (`DEFAULT_CONFIG`), and a
run given `--config X` gets only what X says on top of these dataclass defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from unimodal.gendata import GenDataConfig
from unimodal.generator import GenModelConfig
from unimodal.train.config import BackboneConfig, TrainConfig


@dataclass
class SampleConfig:
    every: int = 200  # steps between sample grids (0: only at the end)
    # two rows of 8: training-split prompts, then held-out ones (GenEval-shapes specs that
    # training never sees, unimodal/data/split.py)
    prompts: tuple[str, ...] = (
        "a red circle",
        "a blue square",
        "a green triangle",
        "a yellow circle",
        "three circles",
        "a square and a circle",
        "a triangle above a circle",
        "a red square and a blue circle",
        "a triangle",
        "a white circle",
        "a magenta square",
        "a cyan square",
        "two triangles",
        "a circle and a square",
        "a square below a triangle",
        "a red circle and a blue square",
    )


@dataclass
class GenEvalConfig:
    n_per_category: int = 32  # GenEval-shapes prompts per category (0: skip); 32 gives an
    # overall score with a standard error of about 0.03
    batch_size: int = 48
    edit_n: int = 100  # editing runs: held-out edit pairs to score (0: skip)


@dataclass
class SpeedConfig:
    compile: bool = False  # torch.compile the decoder and connector (GPU; slow to build on CPU)


@dataclass
class GenTrainConfig:
    DEFAULT_CONFIG: ClassVar[str] = "gen_tiny"

    model: BackboneConfig = field(default_factory=BackboneConfig)
    gen: GenModelConfig = field(default_factory=GenModelConfig)
    data: GenDataConfig = field(default_factory=GenDataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(out_dir="runs/gen"))
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: GenEvalConfig = field(default_factory=GenEvalConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)  # gen.prefix_cache is the other

    def __post_init__(self) -> None:
        if self.data.cache:  # fail at parse time when the run's frozen outputs are not fixed
            from unimodal.gencache import check_cacheable

            check_cacheable(self)
