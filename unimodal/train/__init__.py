"""Training machinery shared by the tools (the loops themselves are `main(cfg)` in `tools/`).

- `config.py`: `TrainConfig`, `BackboneConfig`;
- `optim.py`: AdamW + schedule, EMA;
- `loop.py`: the skeleton (start, resume, steps, take, update, log, save, finish);
- `plots.py`: curves from metrics.jsonl.
"""

from unimodal.train.config import BackboneConfig, TrainConfig
from unimodal.train.loop import Run, Throughput, make_accelerator, print_config, seed_everything
from unimodal.train.optim import EMA, lr_factor, make_optimizer, trainable

__all__ = [
    "EMA",
    "BackboneConfig",
    "Run",
    "Throughput",
    "TrainConfig",
    "lr_factor",
    "make_accelerator",
    "make_optimizer",
    "print_config",
    "seed_everything",
    "trainable",
]
