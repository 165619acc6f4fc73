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
With `--rl.engine=http --rl.engine_url=URL` the rollouts come from an OpenAI-compatible engine
(vLLM, `tools/serve.py`): the head is hot-loaded into it before self-play and after every
update, and the update corrects the engine's log-probs (`[rl.correction]`).
"""

from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import asdict, replace

import torch
from tqdm import tqdm

from evals.code_suites import evaluate_deduction_set, heldout_deduction_set
from evals.code_suites import table as eval_table
from evals.nano import evaluate_kinds, kinds_table
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
from reasoning.nano.tasks import split_tasks
from reasoning.pg import policy_step
from reasoning.pg.engine import make_engine, publish
from unimodal import checkpoint
from unimodal.backbone import Backbone
from unimodal.cli import run_tool
from unimodal.config import ConfigError
from unimodal.pg import estimate
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
    held = cfg.eval.heldout > 0 or cfg.azr.nano.heldout > 0
    with Executor(workers=cfg.executor.workers, timeout=cfg.executor.timeout) as ex:
        loop.resume(
            run, lambda c: bb.load_lora_state_dict(head, checkpoint.load_weights(c, "lora"))
        )
        buffers = task_buffers(run, cfg, ex)
        if held and run.step == 0 and run.main:
            report["before"] = held_out(cfg, bb, ex, None, run)
        model = loop.prepare(run, bb)
        snap = None  # the warm-start head and optimizer, for the equal-time control
        if run.step == 0 and cfg.azr.warmstart_steps > 0:
            warmstart(cfg, bb, model, run, buffers, steps=cfg.azr.warmstart_steps)
            if held and run.main:
                report["warmstart"] = held_out(cfg, bb, ex, head, run)
            snap = snapshot(bb, run, head) if cfg.azr.control else None
        engine = make_engine(cfg.rl, run.out, bb)  # None: rollouts from `bb` itself
        publish(engine, bb, head, run.step, run.acc)
        sp = SelfPlay(ex, cfg.azr, cfg.pg, gather_object, run.acc.process_index,
                      run.acc.num_processes, head, engine)  # fmt: skip
        metrics: dict = {}
        t0 = time.perf_counter()
        for _ in loop.steps(run):
            metrics = selfplay_update(run, cfg, bb, model, buffers, sp)
            publish(engine, bb, head, run.step + 1, run.acc)  # the engine samples the new head
            loop.log(run, metrics, show=("pg/abs_advantage",))
            loop.save(run, lambda: {"lora": bb.lora_state_dict(head)}, buffers=buffers.state_dict())
        report["metrics"] = metrics
        if engine is not None:
            engine.close()
        if held and run.complete:
            seconds = time.perf_counter() - t0
            finish_heldout(cfg, bb, model, ex, run, buffers, report, snap, seconds)
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
    submitted = sp.executor.submitted
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
        kl = cfg.pg.log_kl and run.step % cfg.pg.log_kl == 0  # the KL pass on every N-th only
        pg = cfg.pg if kl else replace(cfg.pg, log_kl=0)
        stats = policy_step(model, bb, sp.head, rollouts, run.opt, pg, acc, cfg.rl.correction)
    bb.model.eval()
    metrics = summarize(every, buffers) | {f"pg/{k}": v for k, v in stats.items()}
    metrics |= {f"time/{k}": v for k, v in times.items()}
    metrics["pg/abs_advantage"] = adv.abs().mean().item()
    metrics |= diagnostics(every, adv, sp.executor.submitted - submitted, times)
    done = run.step + 1
    if run.main and (done % cfg.azr.sample_every == 0 or done == 1):
        few = {role: per_kind(rows, 2) for role, rows in samples.items()}
        with open(run.out / "samples.jsonl", "a") as fh:
            fh.write(json.dumps({"step": done, **few}) + "\n")
    return metrics


def diagnostics(records: list[Record], adv: torch.Tensor, programs: int, times: dict) -> dict:
    """The share of rollouts with a non-zero advantage per (type, role), and the executor's
    throughput this step (programs sent to the sandbox per second of validate + check)."""
    out: dict[str, float] = {}
    for key in sorted({r.key for r in records}):
        rows = [i for i, r in enumerate(records) if r.key == key]
        out[f"{key}/nonzero_adv"] = float((adv[rows].abs() > 1e-6).float().mean())
    seconds = times.get("validate", 0.0) + times.get("check", 0.0)
    out["exec/programs"] = float(programs)
    out["exec/programs_s"] = programs / seconds if seconds > 0 else 0.0
    return out


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
        if ac.nano.seeds:  # nano-world training-split tasks (never a held-out program text)
            nano, pairs = ac.nano, ac.n_visible + 1
            drawn = split_tasks(ex, "train", nano.seeds, nano.seed_difficulty, cfg.train.seed,
                                ac.n_inputs, pairs)  # fmt: skip
            seeds += [t for kind in KINDS for t in drawn[kind]]
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
    """Greedy held-out accuracy with head `head` (None: the base model): per task type on the
    nano world's held-out split (`azr.nano.heldout`), else the templated deduction set."""
    e, nano = cfg.eval, cfg.azr.nano
    if nano.heldout:
        key = (nano.heldout, tuple(nano.heldout_difficulty), cfg.azr.n_inputs, cfg.azr.n_visible)
        if key not in nano_cache:
            nano_cache[key] = split_tasks(ex, "heldout", key[0], key[1], 0, key[2], key[3] + 1)
        with bb.lora(head), run.acc.autocast():
            report = evaluate_kinds(bb, ex, nano_cache[key], e.max_new_tokens, e.batch_size)
        print(kinds_table({head or "base": report}), flush=True)
        return report
    tasks = heldout_deduction_set(ex, e.heldout)
    with bb.lora(head), run.acc.autocast():
        report = evaluate_deduction_set(
            bb, ex, tasks, e.max_new_tokens, e.batch_size, name="heldout_deduction"
        )
    print(eval_table(report), flush=True)
    return report


nano_cache: dict = {}  # the nano held-out tasks per (n, levels, inputs, shown), drawn once


def snapshot(bb: Backbone, run: loop.Run, head: str) -> dict:
    """Copies of the head's weights and the optimizer state (the warm-start checkpoint)."""
    lora = {k: v.detach().clone() for k, v in bb.lora_state_dict(head).items()}
    return {"lora": lora, "opt": copy.deepcopy(run.opt.state_dict())}


def finish_heldout(cfg, bb, model, ex, run: loop.Run, buffers, report: dict, snap, seconds):
    """Score the self-play head; with `azr.control`, restore the warm-start checkpoint, warm
    start for the same wall-clock, score that too; write OUT/eval_heldout.json (rank 0)."""
    head, nano = cfg.head.name, cfg.azr.nano.heldout > 0
    if run.main:
        report["selfplay" if nano else "after"] = held_out(cfg, bb, ex, head, run)
    if snap is not None:
        bb.load_lora_state_dict(head, snap["lora"])
        run.opt.load_state_dict(snap["opt"])
        report["control_steps"] = warmstart(cfg, bb, model, run, buffers, seconds=seconds)
        report["control_seconds"] = report["selfplay_seconds"] = seconds
        if run.main:
            report["control"] = held_out(cfg, bb, ex, head, run)
    if not run.main:
        return
    out = report
    if nano:
        points = [p for p in ("before", "warmstart", "selfplay", "control") if p in report]
        out = {"n": cfg.azr.nano.heldout}
        out |= {p: {k: r["accuracy"] for k, r in report[p].items()} for p in points}
        for stat in ("se", "format_rate"):
            out[stat] = {p: {k: r[stat] for k, r in report[p].items()} for p in points}
        out |= {k: report[k] for k in ("selfplay_seconds", "control_steps") if k in report}
        print(kinds_table({p: report[p] for p in points}), flush=True)
    (run.out / "eval_heldout.json").write_text(json.dumps(out, indent=2))


def warmstart(cfg: AZRTrainConfig, bb: Backbone, model, run: loop.Run, buffers, steps: int = 0,
              seconds: float = 0.0) -> int:  # fmt: skip
    """Format warm start (not in AZR): supervised steps on well-formed buffer tasks at
    `azr.warmstart_lr`, `steps` of them or as many as fit in `seconds` (the control); returns
    how many ran."""
    ac, acc, stats = cfg.azr, run.acc, {}
    pg = replace(cfg.pg, log_kl=0)  # no KL pass in supervised steps
    n = ac.warmstart_batch or 6 * cfg.train.batch_size
    t0, i = time.perf_counter(), 0
    first = 0 if steps else ac.warmstart_steps  # the control continues the warm-start stream
    bar = tqdm(total=steps or None, desc="warm start", disable=not run.main)
    lrs = [g["lr"] for g in run.opt.param_groups]  # self-play's, restored after
    for g in run.opt.param_groups:
        g["lr"] = ac.warmstart_lr or g["lr"]
    while (i < steps) if steps else _same_on_all(run, time.perf_counter() - t0 < seconds):
        rng = random.Random(f"warm/{cfg.train.seed}/{first + i}/{acc.process_index}")
        pairs = warmstart_pairs(buffers, n, rng, ac.references, ac.n_inputs, ac.n_visible)
        rolls = warmstart_rollouts(bb, pairs, cfg.head.name, cfg.pg.temperature, cfg.pg.micro_batch)
        bb.model.train(cfg.model.gradient_checkpointing)
        stats = policy_step(model, bb, cfg.head.name, rolls, run.opt, pg, acc)
        bb.model.eval()
        i += 1
        bar.update(1)
    bar.close()
    for g, lr in zip(run.opt.param_groups, lrs):
        g["lr"] = lr
    acc.print(f"warm start done: {i} steps, last token NLL {-stats.get('logp', 0.0):.3f}")
    return i


def _same_on_all(run: loop.Run, flag: bool) -> bool:
    """Rank 0's `flag` on every rank (so every rank takes the same number of steps)."""
    if run.acc.num_processes == 1:
        return flag
    from accelerate.utils import broadcast_object_list

    return bool(broadcast_object_list([flag])[0])


if __name__ == "__main__":
    run_tool(main, AZRTrainConfig)
