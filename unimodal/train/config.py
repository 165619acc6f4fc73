"""The config sections every training tool shares: the backbone it loads and its optimisation.

`train.batch_size` means one thing everywhere: examples (RL: prompts or tasks) per micro-step
summed over all processes; each process takes `batch_size / num_processes` of them, so a run
keeps its global batch when it moves to more GPUs (`per_process` checks that it divides).
"""

from __future__ import annotations

from dataclasses import dataclass

from unimodal.config import ConfigError

DTYPES = ("auto", "float32", "bfloat16")


@dataclass
class BackboneConfig:
    """Which backbone a tool loads: a local Hugging Face folder, or an offline preset."""

    path: str = ""  # a local HF folder; empty builds the offline `preset` backbone
    preset: str = "tiny"  # tiny | tiny_gen | cpu | small (unimodal/presets.py)
    stage0: str = ""  # a train_mllm config whose OUT/final is the backbone, trained first when
    # missing (unimodal/train/chain.py); a `path` given as well wins (e.g. --model.path=...)
    dtype: str = "auto"  # auto | float32 | bfloat16 (auto: unimodal.train.loop.load_backbone)
    gradient_checkpointing: bool = False  # for the training forward passes only

    def __post_init__(self) -> None:
        from unimodal.presets import PRESETS

        if self.preset not in PRESETS:
            raise ValueError(f"model.preset: unknown '{self.preset}'; one of {sorted(PRESETS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype: unknown '{self.dtype}' ({' | '.join(DTYPES)})")


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping fields common to every training tool."""

    out_dir: str = "runs/default"
    steps: int = 100
    batch_size: int = 8  # per micro-step, over all processes (see the module docstring)
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 10
    schedule: str = "cosine"  # cosine | constant
    min_lr_ratio: float = 0.1
    clip_grad: float = 1.0
    ema_decay: float = 0.0  # 0 disables EMA
    mixed_precision: str = "auto"  # auto (bf16 on GPU, none on CPU) | bf16 | fp16 | no
    seed: int = 0
    log_every: int = 10
    save_every: int = 100
    keep: int = 2
    resume: bool = True  # continue from the newest checkpoint in out_dir when there is one
    stop_at: int = 0  # stop (checkpointed) after this step, keeping the schedule of `steps`;
    # for time-limited jobs that are chained, 0 = run to `steps`
    time_budget_s: float = 0.0  # wall-clock seconds from the run's start after which the step
    # under way is the last one (checkpointed, and the run counts as complete: it exports and
    # evaluates what it has); 0 = off

    @property
    def end_step(self) -> int:
        return min(self.stop_at, self.steps) if self.stop_at > 0 else self.steps

    def per_process(self, num_processes: int) -> int:
        """Examples each process takes per micro-step; a clear error when it does not divide."""
        if self.batch_size % num_processes:
            raise ConfigError(
                f"train.batch_size: {self.batch_size} is not divisible by the "
                f"{num_processes} processes (it is the global batch per micro-step)"
            )
        return self.batch_size // num_processes

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"train.schedule: unknown '{self.schedule}' (cosine | constant)")
        if self.mixed_precision not in ("auto", "bf16", "fp16", "no"):
            raise ValueError(f"train.mixed_precision: unknown '{self.mixed_precision}'")
        if self.time_budget_s < 0:
            raise ValueError(f"train.time_budget_s: must be >= 0, got {self.time_budget_s}")
        for name in ("steps", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name}: must be >= 1, got {getattr(self, name)}")
