"""Training machinery shared by the tools: accelerator, LR schedule, EMA, logging, resume.

The loops themselves stay in `tools/*.py` as plain `main(cfg)` functions; this file holds only
what every loop needs in the same form, so that each behaves the same (bf16 on GPU, progress bar,
TensorBoard, atomic resumable checkpoints).
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unimodal import checkpoint
from unimodal.config import to_toml


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping fields common to every training tool."""

    out_dir: str = "runs/default"
    steps: int = 100
    batch_size: int = 8
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

    @property
    def end_step(self) -> int:
        return min(self.stop_at, self.steps) if self.stop_at > 0 else self.steps

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"train.schedule: unknown '{self.schedule}' (cosine | constant)")
        if self.mixed_precision not in ("auto", "bf16", "fp16", "no"):
            raise ValueError(f"train.mixed_precision: unknown '{self.mixed_precision}'")
        for name in ("steps", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name}: must be >= 1, got {getattr(self, name)}")


def make_accelerator(cfg: TrainConfig):
    """An `accelerate.Accelerator` with bf16 autocast on GPU and TensorBoard logging."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    mp = cfg.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return Accelerator(
        mixed_precision=mp,
        gradient_accumulation_steps=cfg.grad_accum,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=cfg.out_dir, logging_dir=cfg.out_dir),
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine decay to `min_lr_ratio` (or constant)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig):
    """AdamW (fused on GPU) and its warm-up + cosine schedule."""
    fused = torch.cuda.is_available() and all(p.is_cuda for p in params)
    opt = torch.optim.AdamW(
        params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=fused or None
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    return opt, sched


class EMA:
    """Exponential moving average of a set of named parameters (kept in fp32)."""

    def __init__(self, named: dict[str, nn.Parameter], decay: float):
        self.decay = decay
        self.shadow = {k: p.detach().float().clone() for k, p in named.items()}

    @torch.no_grad()
    def update(self, named: dict[str, nn.Parameter]) -> None:
        for k, p in named.items():
            self.shadow[k].lerp_(p.detach().float(), 1 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)

    @torch.no_grad()
    def copy_to(self, named: dict[str, nn.Parameter]) -> None:
        for k, p in named.items():
            p.copy_(self.shadow[k].to(p.dtype))


def trainable(module: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in module.named_parameters() if p.requires_grad}


def print_config(cfg: Any, title: str) -> None:
    print(f"# {title}: resolved config\n{to_toml(cfg)}", file=sys.stderr, flush=True)


class Throughput:
    """Items per second over the steps since the last call."""

    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.n = 0

    def add(self, n: int) -> None:
        self.n += n

    def rate(self) -> float:
        now = time.perf_counter()
        r = self.n / max(now - self.t, 1e-9)
        self.t, self.n = now, 0
        return r


def save_training(
    accelerator,
    cfg_root: Any,
    out_dir: str,
    step: int,
    weights: dict[str, dict[str, torch.Tensor]],
    optimizer,
    scheduler,
    extra_state: dict[str, Any],
    keep: int,
) -> Path | None:
    """Save a full resumable checkpoint from the main process (others wait)."""
    accelerator.wait_for_everyone()
    path = None
    if accelerator.is_main_process:
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": checkpoint.rng_state(),
            **extra_state,
        }
        path = checkpoint.save(out_dir, step, weights, state, to_toml(cfg_root), keep=keep)
    accelerator.wait_for_everyone()
    return path


def restore_training(ckpt: Path, optimizer, scheduler) -> dict[str, Any]:
    """Restore optimizer, schedule and RNG states; return the whole saved training state."""
    state = checkpoint.load_train_state(ckpt)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    checkpoint.set_rng_state(state["rng"])
    return state
