"""A tool's backbone from a stage-0 run: `model.stage0 = "mllm_tiny"` names a `train_mllm`
config whose `OUT/final` folder the tool loads, trained first (by running that tool, in its own
process, with its own progress bar and logs) when it is missing.

An interrupted stage-0 run resumes from its checkpoints the next time. Under several processes
the folder must exist already (one process cannot train it for the others).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from unimodal.config import ConfigError, load_config
from unimodal.train.config import BackboneConfig
from unimodal.train.mllm_config import MLLMConfig


def stage0_folder(name: str) -> Path:
    """`OUT/final` of the stage-0 config `name` (its `train.out_dir`)."""
    cfg = load_config(MLLMConfig, ["--config", name])
    return Path(cfg.train.out_dir) / "final"


TRAIN_MLLM = Path(__file__).resolve().parents[2] / "tools" / "train_mllm.py"


def resolve_stage0(m: BackboneConfig, train_mllm: Path = TRAIN_MLLM) -> None:
    """Point `m.path` at the stage-0 backbone of `m.stage0`, running `train_mllm` (this
    checkout's tool) first when the folder is missing (a no-op when `m.stage0` is empty or
    `m.path` is given)."""
    if not m.stage0 or m.path:  # an explicit path wins
        return
    final = stage0_folder(m.stage0)
    if not (final / "config.json").is_file():
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError(
                f"model.stage0: {final} is missing; train it first with "
                f"`python tools/train_mllm.py --config {m.stage0}`"
            )
        if not train_mllm.is_file():
            raise ConfigError(f"model.stage0: {final} is missing and {train_mllm} is not here")
        print(f"model.stage0: no {final}; training stage 0 first ({m.stage0})", flush=True)
        done = subprocess.run([sys.executable, str(train_mllm), "--config", m.stage0])
        if done.returncode != 0 or not (final / "config.json").is_file():
            raise ConfigError(f"model.stage0: stage 0 '{m.stage0}' failed (exit {done.returncode})")
    m.path = str(final.resolve())
