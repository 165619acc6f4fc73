"""Absolute Zero self-play: one LoRA head proposes and solves its own code tasks.

    python tools/train_azr.py                                  # configs/azr_tiny.toml, CPU
    python tools/train_azr.py --config azr_small_gpu           # after stage 0 (mllm_small_gpu)
    python tools/train_azr.py --config azr_qwen25_coder_7b     # the paper's settings

One step: propose (all task types) -> validate -> estimate learnability -> solve -> check ->
task-relative advantages (over every process) -> one clipped update of the LoRA head. The base
weights stay frozen; the head alone is saved in atomic, resumable checkpoints together with the
task buffers (the shared skeleton, `unimodal.train.loop`). With `eval.heldout > 0` a held-out
deduction set is scored with the head off and on (and after the optional format warm start,
`azr.warmstart_steps`, which AZR does not have). Curves: OUT/curves.png, OUT/azr_curves.png;
readable tasks: OUT/samples.jsonl. Deviations from the paper: reasoning/azr/README.md.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict

import torch
from tqdm import tqdm

from evals.code_suites import evaluate_deduction_set, heldout_deduction_set
from evals.code_suites import table as eval_table
from reasoning.azr import (
    KINDS,
    Record,
    SelfPlay,
    TaskBuffers,
    load_seed_file,
    seed_tasks,
    selfplay_step,
    summarize,
    timed,
    validate_tasks,
)
from reasoning.azr.plot import plot_metrics as plot_azr
from reasoning.azr.train_config import AZRTrainConfig
from reasoning.azr.warmstart import warmstart_pairs, warmstart_rollouts
from reasoning.executor import Executor
from reasoning.pg import estimate, policy_step
from unimodal import checkpoint
from unimodal.backbone import Backbone
from unimodal.cli import run_tool
from unimodal.config import ConfigError
from unimodal.train import loop

CONFIG = AZRTrainConfig


def main(cfg: AZRTrainConfig) -> dict:
    from accelerate.utils import gather_object

    tc, head = cfg.train, cfg.head.name
    if tc.grad_accum != 1:
        raise ConfigError("train.grad_accum: AZR micro-batches with pg.micro_batch; keep it 1")
    run = loop.start(cfg, tc, "azr")  # the same seed, so the same initial head, on every rank
    bb = loop.load_backbone(run, cfg.model, auto_bf16=True).freeze()
    loop.optimizer(run, bb.add_head(cfg.head))
    bb.to(run.acc.device)
    report: dict = {}
    with Executor(workers=cfg.executor.workers, timeout=cfg.executor.timeout) as ex:
        loop.resume(
            run, lambda c: bb.load_lora_state_dict(head, checkpoint.load_weights(c, "lora"))
        )
        buffers = task_buffers(run, cfg, ex)
        if cfg.eval.heldout and run.step == 0 and run.main:
            report["before"] = held_out(cfg, bb, ex, None, run)
        model = loop.prepare(run, bb)
        if run.step == 0 and cfg.azr.warmstart_steps > 0:
            warmstart(cfg, bb, model, run, buffers)
            if cfg.eval.heldout and run.main:
                report["warmstart"] = held_out(cfg, bb, ex, head, run)
        sp = SelfPlay(ex, cfg.azr, cfg.pg, gather_object, run.acc.process_index,
                      run.acc.num_processes, head)  # fmt: skip
        metrics: dict = {}
        for _ in loop.steps(run):
            metrics = selfplay_update(run, cfg, bb, model, buffers, sp)
            loop.log(run, metrics, show=("pg/abs_advantage",))
            loop.save(run, lambda: {"lora": bb.lora_state_dict(head)}, buffers=buffers.state_dict())
        report["metrics"] = metrics
        if cfg.eval.heldout and run.complete and run.main:
            report["after"] = held_out(cfg, bb, ex, head, run)
            (run.out / "eval_heldout.json").write_text(json.dumps(report, indent=2))
    if run.main and (run.out / "metrics.jsonl").is_file():
        plot_azr(run.out)
    loop.finish(run, curves=("pg/abs_advantage", "pg/loss", "time/update"))
    return report


def selfplay_update(run: loop.Run, cfg: AZRTrainConfig, bb: Backbone, model, buffers, sp) -> dict:
    """One self-play step: rollouts of every (type, role), advantages over all processes, one
    clipped update of the head; returns the step's metrics (samples.jsonl written on rank 0)."""
    from accelerate.utils import gather_object

    acc, times = run.acc, {}
    rng = random.Random(f"{cfg.train.seed}/{run.step}/{acc.process_index}")  # exact on resume
    gen = torch.Generator(acc.device).manual_seed(rng.getrandbits(63))
    bb.model.eval()  # KV-cache decoding (checkpointing is for the update only)
    with acc.autocast():
        rollouts, records, samples = selfplay_step(
            bb, buffers, sp, cfg.train.batch_size, run.step, rng, times, gen
        )
    counts = gather_object([len(records)])
    every = [Record(**r) for r in gather_object([asdict(r) for r in records])]
    rewards = torch.tensor([r.reward for r in every])  # (N,) all ranks
    lengths = torch.tensor([float(r.length) for r in every])  # (N,)
    adv = estimate(cfg.azr.estimator, rewards, [r.key for r in every], lengths)  # (N,)
    start = sum(counts[: acc.process_index])
    for roll, a in zip(rollouts, adv[start : start + len(rollouts)].tolist()):
        roll.advantage = a
    bb.model.train(cfg.model.gradient_checkpointing)
    with timed(times, "update"):
        stats = policy_step(model, bb, sp.head, rollouts, run.opt, cfg.pg, acc)
    bb.model.eval()
    metrics = summarize(every, buffers) | {f"pg/{k}": v for k, v in stats.items()}
    metrics |= {f"time/{k}": v for k, v in times.items()}
    metrics["pg/abs_advantage"] = adv.abs().mean().item()
    done = run.step + 1
    if run.main and (done % cfg.azr.sample_every == 0 or done == 1):
        few = {role: per_kind(rows, 2) for role, rows in samples.items()}
        with open(run.out / "samples.jsonl", "a") as fh:
            fh.write(json.dumps({"step": done, **few}) + "\n")
    return metrics


def task_buffers(run: loop.Run, cfg: AZRTrainConfig, ex: Executor) -> TaskBuffers:
    """The restored buffers, or the identity seed plus validated rows of the seed files
    (validated on rank 0 and broadcast, so every rank starts from the same tasks)."""
    from accelerate.utils import broadcast_object_list

    if "buffers" in run.state:
        return TaskBuffers.from_state_dict(run.state["buffers"])
    box = [None]
    if run.main:
        ac = cfg.azr
        seeds = seed_tasks(ac.n_inputs)
        for f in ac.seed_files:
            seeds += load_seed_file(f, ac.seed_limit)
        checked = validate_tasks(ex, seeds, ac.n_visible + 1, ac.max_task_chars)
        box = [TaskBuffers(t for t, _ in checked if t is not None).state_dict()]
    return TaskBuffers.from_state_dict(broadcast_object_list(box)[0])


def per_kind(rows: list[dict], n: int) -> list[dict]:
    """The first `n` rows of each task kind (valid / correct ones first)."""
    rows = sorted(rows, key=lambda r: not (r.get("valid") or r.get("correct")))
    return [r for k in KINDS for r in [x for x in rows if x["kind"] == k][:n]]


def held_out(cfg: AZRTrainConfig, bb: Backbone, ex: Executor, head: str | None, run) -> dict:
    """Greedy accuracy on the held-out deduction set with head `head` (None: the base model)."""
    tasks = heldout_deduction_set(ex, cfg.eval.heldout)
    e = cfg.eval
    with bb.lora(head), run.acc.autocast():
        report = evaluate_deduction_set(
            bb, ex, tasks, e.max_new_tokens, e.batch_size, name="heldout_deduction"
        )
    print(eval_table(report), flush=True)
    return report


def warmstart(cfg: AZRTrainConfig, bb: Backbone, model, run: loop.Run, buffers) -> None:
    """Optional format warm start (not in AZR): supervised steps on well-formed buffer tasks."""
    ac, acc, stats = cfg.azr, run.acc, {}
    for i in tqdm(range(ac.warmstart_steps), desc="warm start", disable=not run.main):
        rng = random.Random(f"warm/{cfg.train.seed}/{i}/{acc.process_index}")
        pairs = warmstart_pairs(
            buffers, 6 * cfg.train.batch_size, rng, ac.references, ac.n_inputs, ac.n_visible
        )
        rolls = warmstart_rollouts(bb, pairs, cfg.head.name, cfg.pg.temperature)
        bb.model.train(cfg.model.gradient_checkpointing)
        stats = policy_step(model, bb, cfg.head.name, rolls, run.opt, cfg.pg, acc)
        bb.model.eval()
    nll = -stats.get("logp", 0.0)
    acc.print(f"warm start done: {ac.warmstart_steps} steps, last token NLL {nll:.3f}")


if __name__ == "__main__":
    run_tool(main, AZRTrainConfig)
