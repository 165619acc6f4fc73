"""The training skeleton every tool shares, as plain functions over one `Run` record.

    run = loop.start(cfg, cfg.train, "gen")    # accelerator, seed, resolved config printed
    loop.optimizer(run, params)                # AdamW + warm-up/cosine schedule
    loop.resume(run, load_weights)             # newest checkpoint: weights, optimizer, RNG
    model = loop.prepare(run, module)
    for _ in loop.steps(run):                  # progress bar, stop_at, time budget, LR schedule
        batch = loop.take(run, data)           # this process's share; position advances
        losses = loop.update(run, model, params, partial(model, batch))
        loop.log(run, losses)                  # every log_every: bar, TensorBoard, jsonl
        loop.save(run, lambda: {"trainable": ...})  # every save_every and at the last step
    loop.finish(run)                           # curves.png from metrics.jsonl

So `stop_at`, resume, logging, checkpoints and the end-of-run work behave the same in every
tool by construction. Left out on purpose: a trainer class, callbacks, hooks.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unimodal import checkpoint
from unimodal.config import to_toml
from unimodal.train.config import BackboneConfig, TrainConfig
from unimodal.train.optim import make_optimizer

METRICS = "metrics.jsonl"


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


@dataclass
class Run:
    """A training run's bookkeeping (no behaviour of its own: the functions below act on it)."""

    cfg: Any  # the root config, saved with every checkpoint
    tc: TrainConfig
    acc: Any  # accelerate.Accelerator
    name: str
    out: Path
    per_process: int  # examples each process takes per micro-step
    step: int = 0  # optimizer steps done
    position: int = 0  # examples consumed over all processes (the data position)
    state: dict[str, Any] = field(default_factory=dict)  # the restored training state
    opt: Any = None
    sched: Any = None
    speed: Throughput = field(default_factory=Throughput)
    bar: Any = None
    started: float = field(default_factory=time.perf_counter)  # for `train.time_budget_s`
    stopped_by_budget: bool = False  # the time budget made the current / last step the last

    @property
    def complete(self) -> bool:
        """The whole schedule ran (not only up to `stop_at`), or the time budget ended it: time
        for export and evaluation."""
        return self.step >= self.tc.steps or self.stopped_by_budget

    @property
    def main(self) -> bool:
        return self.acc.is_main_process


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


def print_config(cfg: Any, title: str) -> None:
    print(f"# {title}: resolved config\n{to_toml(cfg)}", file=sys.stderr, flush=True)


def start(cfg: Any, tc: TrainConfig, name: str) -> Run:
    """Accelerator, seed, the resolved config on stderr, the output folder."""
    acc = make_accelerator(tc)
    per_process = tc.per_process(acc.num_processes)
    seed_everything(tc.seed)
    if acc.is_main_process:
        print_config(cfg, name)
    out = Path(tc.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return Run(cfg, tc, acc, name, out, per_process)


def load_backbone(run: Run, m: BackboneConfig, auto_bf16: bool = False):
    """The backbone of `m` (a preset is built once, by the main process first; a stage-0 run
    named by `m.stage0` is trained first when its folder is missing).

    `model.dtype = "auto"` keeps the checkpoint's own dtype, or with `auto_bf16` (frozen bases
    under LoRA heads) loads bf16 weights when training runs under bf16 mixed precision."""
    from unimodal.backbone import Backbone
    from unimodal.presets import ensure_backbone
    from unimodal.train.chain import resolve_stage0

    resolve_stage0(m)  # `model.stage0`: the stage-0 run's OUT/final, trained first if missing
    with run.acc.main_process_first():
        path = ensure_backbone(m.path, m.preset)
    dtype = None if m.dtype == "auto" else getattr(torch, m.dtype)
    if m.dtype == "auto" and auto_bf16:
        dtype = torch.bfloat16 if run.acc.mixed_precision == "bf16" else torch.float32
    bb = Backbone.from_pretrained(path, dtype=dtype)
    if m.gradient_checkpointing:
        kw = {"use_reentrant": False}
        bb.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
    return bb


def optimizer(run: Run, params: Sequence[nn.Parameter]):
    """AdamW over `params` and its schedule, kept on the run (stepped by `steps`)."""
    run.opt, run.sched = make_optimizer(list(params), run.tc)
    return run.opt


def resume(run: Run, load: Callable[[Path], None]) -> Path | None:
    """Continue from the newest checkpoint in `out_dir` (unless `train.resume=false`):
    `load(ckpt)` restores the tool's weights; optimizer, schedule, RNG and position follow."""
    ckpt = checkpoint.latest(run.tc.out_dir) if run.tc.resume else None
    if ckpt is None:
        return None
    load(ckpt)
    state = checkpoint.load_train_state(ckpt)
    run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    checkpoint.set_rng_state(state["rng"])
    run.state = state
    run.step, run.position = state["step"], state.get("position", 0)
    run.acc.print(f"resumed from {ckpt} at step {run.step}")
    return ckpt


def prepare(run: Run, module: nn.Module) -> nn.Module:
    """`accelerator.prepare` of the module and the run's optimizer; the wrapped module."""
    model, run.opt = run.acc.prepare(module, run.opt)
    run.acc.init_trackers(run.name)
    return model


def steps(run: Run) -> Iterator[int]:
    """Yield each step index up to `train.end_step` with a progress bar. The schedule moves to
    step i before step i's update (so a checkpoint saved during step i holds the schedule at i,
    and a run resumed after it moves it to i + 1). The bar shows the whole schedule, so a
    chained `stop_at` job starts where the last one stopped. With `train.time_budget_s`, a step
    that starts after the budget is spent is the last one (logged and checkpointed as such)."""
    run.bar = _bar(run)
    try:
        while run.step < run.tc.end_step:
            if run.step > 0:
                run.sched.step()
            run.stopped_by_budget = _out_of_time(run)
            yield run.step
            run.step += 1
            run.bar.update(1)
            if run.stopped_by_budget:
                budget = run.tc.time_budget_s
                run.acc.print(f"stopped by the time budget ({budget:g} s) after step {run.step}")
                break
    finally:
        run.bar.close()


def _out_of_time(run: Run) -> bool:
    """Whether `train.time_budget_s` is spent (the main process's clock decides for all)."""
    if run.tc.time_budget_s <= 0:
        return False
    over = [time.perf_counter() - run.started >= run.tc.time_budget_s]
    if run.acc.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        over = broadcast_object_list(over)
    return bool(over[0])


def _bar(run: Run):
    from tqdm import tqdm

    off = not run.acc.is_local_main_process
    return tqdm(total=run.tc.steps, initial=run.step, disable=off, desc=run.name)


def take(run: Run, source: Any) -> list[Any]:
    """This process's share of the next global micro-batch of `source[i]`; position advances."""
    start = run.position + run.acc.process_index * run.per_process
    run.position += run.tc.batch_size
    items = [source[start + i] for i in range(run.per_process)]
    run.speed.add(run.tc.batch_size)
    return items


def update(
    run: Run, model: nn.Module, params: Sequence[nn.Parameter], loss_fn: Callable[[], Any]
) -> dict[str, float]:
    """One supervised micro-step: forward (autocast), backward, clip, AdamW under accumulation.
    `loss_fn()` returns a loss tensor or a dict of them with a 'loss' entry; returns floats."""
    acc, tc = run.acc, run.tc
    with acc.accumulate(model), acc.autocast():
        out = loss_fn()
        losses = out if isinstance(out, dict) else {"loss": out}
        acc.backward(losses["loss"])
        if acc.sync_gradients and tc.clip_grad > 0:
            acc.clip_grad_norm_(params, tc.clip_grad)
        run.opt.step()
        run.opt.zero_grad(set_to_none=True)
    return {k: float(v.detach()) for k, v in losses.items()}


def due(run: Run, every: int) -> bool:
    """Whether the step just finished (`run.step + 1`, inside the loop) is a multiple of `every`
    or the last step of this job (its end, or the time budget's)."""
    done = run.step + 1
    return (every > 0 and done % every == 0) or done == run.tc.end_step or run.stopped_by_budget


def log(run: Run, row: dict[str, float], show: Sequence[str] = ("loss",)) -> None:
    """Every `log_every` steps: learning rate and throughput added, the bar's postfix, the
    tracker (TensorBoard) and one line of OUT/metrics.jsonl."""
    if not due(run, run.tc.log_every):
        return
    step = run.step + 1
    row = {**row, "lr": run.sched.get_last_lr()[0], "items_s": run.speed.rate()}
    run.bar.set_postfix({k: f"{row[k]:.3f}" for k in show if k in row})
    run.acc.log(row, step)
    if run.main:
        with open(run.out / METRICS, "a") as f:
            f.write(json.dumps({"step": step, **row}) + "\n")


def save(run: Run, weights: Callable[[], dict[str, dict[str, torch.Tensor]]], **extra: Any):
    """Every `save_every` steps and at the job's last step: an atomic resumable checkpoint of
    `weights()`, optimizer, schedule, RNG, position and `extra` (main process writes)."""
    if not due(run, run.tc.save_every):
        return None
    acc = run.acc
    acc.wait_for_everyone()
    path = None
    groups = weights()
    if acc.is_main_process:
        state = {
            "optimizer": run.opt.state_dict(),
            "scheduler": run.sched.state_dict(),
            "rng": checkpoint.rng_state(),
            "step": run.step + 1,
            "position": run.position,
            **extra,
        }
        cfg = to_toml(run.cfg)
        path = checkpoint.save(run.out, run.step + 1, groups, state, cfg, keep=run.tc.keep)
    acc.wait_for_everyone()
    return path


def finish(run: Run, curves: Sequence[str] = ("loss",)) -> None:
    """End the trackers and plot `curves` from OUT/metrics.jsonl to OUT/curves.png."""
    if run.main and (run.out / METRICS).is_file():
        from unimodal.train.plots import plot_metrics

        try:
            plot_metrics(run.out / METRICS, run.out / "curves.png", curves, run.name)
        except ImportError as e:  # a machine without matplotlib still ends the run cleanly
            print(f"warning: no curves.png ({e})", file=sys.stderr)
    run.acc.end_training()
