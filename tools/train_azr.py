"""Absolute Zero self-play: one LoRA head proposes and solves its own code tasks.

    python tools/train_azr.py                                  # tiny preset, CPU, 2 steps
    python tools/train_azr.py --config azr_small_gpu           # after stage 0 (mllm_small_gpu)
    python tools/train_azr.py --config azr_qwen25_coder_7b     # the paper's settings
    python -m reasoning.azr.plot runs/azr_tiny                 # curves from metrics.jsonl

One step: propose (all task types) -> validate -> estimate learnability -> solve -> check ->
task-relative advantages (over every process) -> one clipped update of the LoRA head. The base
weights stay frozen; the head alone is saved in atomic, resumable checkpoints together with the
task buffers. With `eval.heldout > 0` a held-out deduction set is scored with the head off and
on (and after the optional format warm start, `azr.warmstart_steps`, which AZR does not have).
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm


from reasoning.azr import (
    KINDS,
    AZRConfig,
    Record,
    TaskBuffers,
    load_seed_file,
    seed_tasks,
    selfplay_step,
    summarize,
    timed,
    validate_tasks,
)
from reasoning.azr.warmstart import warmstart_pairs, warmstart_rollouts
from reasoning.executor import Executor
from reasoning.pg import PGConfig, estimate, policy_step
from unimodal import checkpoint
from unimodal.backbone import Backbone
from unimodal.cli import run_tool
from unimodal.config import ConfigError, load_config
from evals.code_suites import evaluate_deduction_set, heldout_deduction_set
from evals.code_suites import table as eval_table
from unimodal.train import (
    TrainConfig,
    make_accelerator,
    make_optimizer,
    print_config,
    restore_training,
    save_training,
    seed_everything,
)
from unimodal.presets import ensure_backbone

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass
class ModelConfig:
    path: str = ""  # a local HF folder; empty builds the offline `preset` backbone
    preset: str = "tiny"
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | bfloat16 | float32; head is fp32
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    gradient_checkpointing: bool = False


@dataclass
class ExecutorConfig:
    workers: int = 2
    timeout: float = 1.0


@dataclass
class EvalConfig:
    heldout: int = 0  # held-out deduction programs scored before and after (0: off)
    max_new_tokens: int = 256
    batch_size: int = 32


@dataclass
class AZRTrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    azr: AZRConfig = field(
        default_factory=lambda: AZRConfig(references=2, learnability_samples=2, max_new_tokens=24)
    )
    pg: PGConfig = field(default_factory=PGConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # batch_size: tasks per (task type, role) per step over all processes (paper: 64)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            out_dir="runs/azr_tiny",
            steps=2,
            batch_size=2,
            lr=1e-3,
            warmup_steps=0,
            schedule="constant",
            log_every=1,
            save_every=1,
        )
    )


CONFIG = AZRTrainConfig


def load_head(backbone: Backbone, run_or_ckpt: str | Path) -> str:
    """Attach the trained AZR head of a run folder (newest checkpoint) or checkpoint; its name.

    For evaluation: `with backbone.lora(load_head(bb, "runs/azr_small")): evaluate_cruxeval(...)`.
    """
    ckpt = Path(run_or_ckpt)
    if not (ckpt / "state.json").is_file():
        ckpt = checkpoint.latest(ckpt)
        if ckpt is None:
            raise FileNotFoundError(f"no AZR checkpoint under {run_or_ckpt}")
    cfg = load_config(AZRTrainConfig, ["--config", str(ckpt / "config.toml")])
    m, head = cfg.model, cfg.azr.head
    backbone.add_lora(head, m.lora_r, m.lora_alpha, m.lora_dropout, tuple(m.target_modules))
    backbone.load_lora_state_dict(head, checkpoint.load_weights(ckpt, "lora"))
    return head


def _initial_buffers(cfg: AZRTrainConfig, ex: Executor) -> TaskBuffers:
    """The identity seed plus validated rows of the seed files (canonical output reprs)."""
    seeds = seed_tasks(cfg.azr.n_inputs)
    for f in cfg.azr.seed_files:
        seeds += load_seed_file(f, cfg.azr.seed_limit)
    checked = validate_tasks(ex, seeds, cfg.azr.n_visible + 1, cfg.azr.max_task_chars)
    return TaskBuffers(t for t, _ in checked if t is not None)


def _per_kind(rows: list[dict], n: int) -> list[dict]:
    """The first `n` rows of each task kind (valid / correct ones first)."""
    rows = sorted(rows, key=lambda r: not (r.get("valid") or r.get("correct")))
    return [r for k in KINDS for r in [x for x in rows if x["kind"] == k][:n]]


def _held_out(cfg: AZRTrainConfig, bb: Backbone, ex: Executor, head: str | None, acc) -> dict:
    """Greedy accuracy on the held-out deduction set with head `head` (None: the base model)."""
    tasks = heldout_deduction_set(ex, cfg.eval.heldout)
    with bb.lora(head), acc.autocast():
        report = evaluate_deduction_set(
            bb, ex, tasks, cfg.eval.max_new_tokens, cfg.eval.batch_size, name="heldout_deduction"
        )
    print(eval_table(report), flush=True)
    return report


def _warmstart(cfg: AZRTrainConfig, bb: Backbone, model, opt, acc, buffers: TaskBuffers) -> None:
    """Optional format warm start (not in AZR): supervised steps on well-formed buffer tasks."""
    ac = cfg.azr
    for i in tqdm(range(ac.warmstart_steps), desc="warm start", disable=not acc.is_main_process):
        rng = random.Random(f"warm/{cfg.train.seed}/{i}/{acc.process_index}")
        pairs = warmstart_pairs(
            buffers, 6 * cfg.train.batch_size, rng, ac.references, ac.n_inputs, ac.n_visible
        )
        rolls = warmstart_rollouts(bb, pairs, ac.head, ac.temperature)
        bb.model.train(cfg.model.gradient_checkpointing)
        stats = policy_step(model, bb, ac.head, rolls, opt, cfg.pg, acc)
        bb.model.eval()
    nll = -stats.get("logp", 0.0)
    acc.print(f"warm start done: {ac.warmstart_steps} steps, last token NLL {nll:.3f}")


def main(cfg: AZRTrainConfig) -> dict:
    from accelerate.utils import broadcast_object_list, gather_object

    tc, ac, head = cfg.train, cfg.azr, cfg.azr.head
    if tc.grad_accum != 1:
        raise ConfigError("train.grad_accum: AZR micro-batches with pg.micro_batch; keep it 1")
    acc = make_accelerator(tc)
    seed_everything(tc.seed)  # the same initial head on every rank
    if acc.is_main_process:
        print_config(cfg, "train_azr")
    with acc.main_process_first():
        path = ensure_backbone(cfg.model.path, cfg.model.preset)
    dtype = cfg.model.dtype
    if dtype == "auto":
        dtype = "bfloat16" if acc.mixed_precision == "bf16" else "float32"
    bb = Backbone.from_pretrained(path, dtype=DTYPES[dtype]).freeze()
    m = cfg.model
    bb.add_lora(head, m.lora_r, m.lora_alpha, m.lora_dropout, tuple(m.target_modules))
    for p in bb.lora_parameters(head):
        p.data = p.data.float()  # fp32 master weights for the head even on a bf16 base
    bb.set_lora(head)
    bb.to(acc.device)
    if m.gradient_checkpointing:
        bb.model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    opt, sched = make_optimizer(bb.lora_parameters(head), tc)
    out = Path(tc.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {}
    metrics: dict[str, float] = {}
    with Executor(workers=cfg.executor.workers, timeout=cfg.executor.timeout) as ex:
        step = 0
        ckpt = checkpoint.latest(tc.out_dir) if tc.resume else None
        if ckpt is not None:
            bb.load_lora_state_dict(head, checkpoint.load_weights(ckpt, "lora"))
            state = restore_training(ckpt, opt, sched)
            step, buffers = state["step"], TaskBuffers.from_state_dict(state["buffers"])
            acc.print(f"resumed from {ckpt} at step {step} (buffers {buffers.sizes()})")
        else:
            box = [_initial_buffers(cfg, ex).state_dict() if acc.is_main_process else None]
            buffers = TaskBuffers.from_state_dict(broadcast_object_list(box)[0])
        if cfg.eval.heldout and step == 0 and acc.is_main_process:
            report["before"] = _held_out(cfg, bb, ex, None, acc)
        model, opt = acc.prepare(bb, opt)
        if step == 0 and cfg.azr.warmstart_steps > 0:
            _warmstart(cfg, bb, model, opt, acc, buffers)
            if cfg.eval.heldout and acc.is_main_process:
                report["warmstart"] = _held_out(cfg, bb, ex, head, acc)
        acc.init_trackers("azr")
        bar = tqdm(total=tc.steps, initial=step, disable=not acc.is_local_main_process, desc="azr")
        while step < tc.end_step:
            times: dict[str, float] = {}
            rng = random.Random(f"{tc.seed}/{step}/{acc.process_index}")  # exact on resume
            gen = torch.Generator(acc.device).manual_seed(rng.getrandbits(63))
            bb.model.eval()  # KV-cache decoding (checkpointing is for the update only)
            with acc.autocast():
                rollouts, records, samples = selfplay_step(
                    bb,
                    buffers,
                    ex,
                    ac,
                    tc.batch_size,
                    step,
                    rng,
                    times,
                    gen,
                    gather_object,
                    acc.process_index,
                    acc.num_processes,
                )
            counts = gather_object([len(records)])
            every = [Record(**r) for r in gather_object([asdict(r) for r in records])]
            rewards = torch.tensor([r.reward for r in every])  # (N,) all ranks
            lengths = torch.tensor([float(r.length) for r in every])  # (N,)
            adv = estimate(ac.estimator, rewards, [r.key for r in every], lengths)  # (N,)
            start = sum(counts[: acc.process_index])
            for roll, a in zip(rollouts, adv[start : start + len(rollouts)].tolist()):
                roll.advantage = a
            bb.model.train(m.gradient_checkpointing)
            with timed(times, "update"):
                stats = policy_step(model, bb, head, rollouts, opt, cfg.pg, acc)
            bb.model.eval()
            sched.step()
            step += 1
            bar.update(1)
            metrics = summarize(every, buffers)
            metrics.update({f"pg/{k}": v for k, v in stats.items()})
            metrics.update({f"time/{k}": v for k, v in times.items()})
            metrics.update(
                {"lr": sched.get_last_lr()[0], "pg/abs_advantage": adv.abs().mean().item()}
            )
            if acc.is_main_process and (step % tc.log_every == 0 or step == tc.end_step):
                acc.log(metrics, step)
                with open(out / "metrics.jsonl", "a") as fh:
                    fh.write(json.dumps({"step": step, **metrics}) + "\n")
                bar.set_postfix(
                    valid=f"{sum(r.success for r in every if r.key.endswith('propose'))}",
                    solved=f"{sum(r.success for r in every if r.key.endswith('solve'))}",
                    **{k: f"{v:.1f}s" for k, v in times.items()},
                )
            if acc.is_main_process and (step % ac.sample_every == 0 or step == 1):
                few = {role: _per_kind(rows, 2) for role, rows in samples.items()}
                with open(out / "samples.jsonl", "a") as fh:
                    fh.write(json.dumps({"step": step, **few}) + "\n")
            if step % tc.save_every == 0 or step == tc.end_step:
                state = {"step": step, "buffers": buffers.state_dict()}
                weights = {"lora": bb.lora_state_dict(head)}
                save_training(acc, cfg, tc.out_dir, step, weights, opt, sched, state, tc.keep)
        bar.close()
        report["metrics"] = metrics
        if cfg.eval.heldout and step >= tc.steps and acc.is_main_process:
            report["after"] = _held_out(cfg, bb, ex, head, acc)
            (out / "eval_heldout.json").write_text(json.dumps(report, indent=2))
    acc.end_training()
    return report


if __name__ == "__main__":
    run_tool(main, AZRTrainConfig)
