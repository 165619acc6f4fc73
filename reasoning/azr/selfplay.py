"""One Absolute Zero self-play step up to the rewards (Zhao et al. 2025, Algorithm 1).

propose (every task type, K references each) -> parse -> validate in the executor -> estimate
learnability with n solver samples per valid task -> add valid tasks to the buffers (gathered
from every process so all ranks hold the same buffers) -> solve the newest tasks of each type
-> check in the executor -> rewards. Returns scored `Rollout`s keyed by "type/role" (the six
task-relative baselines) and one plain `Record` per rollout for logging. The policy update and
advantages are the caller's (tools/train_azr.py), since advantages are normalised over all
processes. The learnability samples only score proposals; they are not trained on (as in AZR).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from reasoning.azr.prompts import parse_answer, parse_proposal, proposer_prompt, solver_prompt
from reasoning.azr.rewards import RewardConfig, proposer_reward, solver_reward
from reasoning.azr.tasks import KINDS, Task, TaskBuffers
from reasoning.azr.verify import check_answers, validate_tasks
from reasoning.executor import Executor
from reasoning.pg.rollout import Rollout, generate
from unimodal.backbone import Backbone


@dataclass
class AZRConfig:
    head: str = "azr"  # name of the LoRA head trained by self-play
    references: int = 6  # K past tasks shown to the proposer
    learnability_samples: int = 8  # n solver samples per proposal (temperature below)
    n_inputs: int = 10  # inputs written by an induction proposer
    n_visible: int = 5  # pairs shown to the induction solver (the rest are held out)
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64  # response budget of every role (paper: 8k)
    max_task_chars: int = 2000  # longer tasks (program + pairs + message) are invalid; 0: no cap
    gen_batch: int = 32  # prompts per generation call
    static_cache: bool = False  # rollouts decode into a preallocated KV cache
    compile_decode: bool = False  # ... with a compiled decode step (CUDA graphs on a GPU)
    seed_files: list[str] = field(default_factory=list)  # AZR seed JSONLs, added after identity
    seed_limit: int = 0  # rows read per seed file (0: all)
    estimator: str = "task_relative"  # see reasoning.pg.advantages.ESTIMATORS
    sample_every: int = 10  # write example tasks and answers to samples.jsonl every N steps
    warmstart_steps: int = 0  # format warm-start updates before self-play (not in AZR; 0: off)
    rewards: RewardConfig = field(default_factory=RewardConfig)


@dataclass
class Record:
    """Plain per-rollout facts for logging (the same order as the returned rollouts)."""

    key: str  # "deduction/propose", ...
    reward: float
    length: int
    parsed: bool
    success: bool  # proposer: the task is valid; solver: the answer is correct
    solve_rate: float = -1.0  # proposer: estimated solve rate of a valid task, else -1


@contextlib.contextmanager
def timed(times: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        times[name] = times.get(name, 0.0) + time.perf_counter() - t0


def _user(bb: Backbone, text: str) -> str:
    return bb.render([{"role": "user", "content": text}])


def _generate(bb: Backbone, prompts: list[str], cfg: AZRConfig, gen: torch.Generator | None):
    return generate(
        bb, prompts, cfg.head, cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.gen_batch, gen,
        static=cfg.static_cache, compile=cfg.compile_decode,
    )  # fmt: skip


def _solve(
    bb: Backbone,
    ex: Executor,
    tasks: list[Task],
    cfg: AZRConfig,
    times: dict[str, float],
    phase: str,
    gen: torch.Generator | None,
) -> tuple[list[Rollout], list[bool], list[bool]]:
    """Sample one answer per task; returns (rollouts, parsed flags, correct flags)."""
    prompts = [_user(bb, solver_prompt(t, cfg.n_visible)) for t in tasks]
    with timed(times, phase):
        rolls = _generate(bb, prompts, cfg, gen)
    answers = [parse_answer(t.kind, r.text)[0] for t, r in zip(tasks, rolls)]
    with timed(times, "check"):
        correct = check_answers(ex, tasks, answers)
    return rolls, [a is not None for a in answers], correct


def selfplay_step(
    bb: Backbone,
    buffers: TaskBuffers,
    ex: Executor,
    cfg: AZRConfig,
    batch: int,
    step: int,
    rng: random.Random,
    times: dict[str, float],
    gen: torch.Generator | None = None,
    gather: Callable[[list], list] = lambda x: x,
    rank: int = 0,
    world: int = 1,
) -> tuple[list[Rollout], list[Record], dict[str, list[dict]]]:
    """Propose, validate, estimate learnability, grow the buffers, solve and score (one rank).

    `batch` tasks per (type, role) over all `world` processes; `gather` concatenates a list
    over processes (accelerate's `gather_object`) and must be called by every rank.
    """
    per_rank = -(-batch // world)
    # 1. propose
    jobs: list[tuple[str, Task | None]] = []
    prompts: list[str] = []
    for kind in KINDS:
        programs = buffers.programs(rng, per_rank) if kind == "induction" else [None] * per_rank
        for prog in programs:
            refs = [] if kind == "induction" else buffers.references(kind, cfg.references, rng)
            jobs.append((kind, prog))
            prompts.append(_user(bb, proposer_prompt(kind, refs, prog, cfg.n_inputs)))
    with timed(times, "propose"):
        props = _generate(bb, prompts, cfg, gen)
    parsed = [parse_proposal(k, r.text, p, cfg.n_inputs, step) for (k, p), r in zip(jobs, props)]
    # 2. validate
    cand = [i for i, (t, _) in enumerate(parsed) if t is not None]
    with timed(times, "validate"):
        todo = [parsed[i][0] for i in cand]
        checked = validate_tasks(ex, todo, cfg.n_visible + 1, cfg.max_task_chars)
    valid: dict[int, Task] = {i: t for i, (t, _) in zip(cand, checked) if t is not None}
    reasons = {i: why for i, (t, why) in zip(cand, checked) if t is None}
    # 3. learnability: n solver samples per valid task
    order = list(valid)
    n = cfg.learnability_samples
    mc_tasks = [valid[i] for i in order for _ in range(n)]
    _, _, mc_correct = _solve(bb, ex, mc_tasks, cfg, times, "learnability", gen)
    rates = {i: sum(mc_correct[j * n : (j + 1) * n]) / n for j, i in enumerate(order)}
    rollouts: list[Rollout] = []
    records: list[Record] = []
    samples: dict[str, list[dict]] = {"propose": [], "solve": []}
    for i, ((kind, _), roll) in enumerate(zip(jobs, props)):
        ok = parsed[i][0] is not None
        r = proposer_reward(ok, i in valid, rates.get(i), cfg.rewards)
        roll.key, roll.reward = f"{kind}/propose", r
        rollouts.append(roll)
        records.append(Record(roll.key, r, roll.length, ok, i in valid, rates.get(i, -1.0)))
        why = parsed[i][1].reason or reasons.get(i, "")
        samples["propose"].append(
            {
                "kind": kind,
                "response": roll.text,
                "valid": i in valid,
                "why": why,
                "solve_rate": rates.get(i, -1.0),
                "reward": r,
            }
        )
    # 4. grow the buffers identically on every rank
    new = gather([valid[i].to_dict() for i in order])
    buffers.add(Task.from_dict(d) for d in new)
    # 5. solve the newest tasks of every type
    tasks = [t for k in KINDS for t in buffers.newest(k, per_rank, skip=rank * per_rank)]
    rolls, ok, correct = _solve(bb, ex, tasks, cfg, times, "solve", gen)
    for t, roll, p, c in zip(tasks, rolls, ok, correct):
        r = solver_reward(p, c, cfg.rewards)
        roll.key, roll.reward = f"{t.kind}/solve", r
        rollouts.append(roll)
        records.append(Record(roll.key, r, roll.length, p, c))
        samples["solve"].append(
            {
                "kind": t.kind,
                "program": t.program,
                "inputs": t.inputs[:2],
                "outputs": t.outputs[:2],
                "response": roll.text,
                "correct": c,
                "reward": r,
            }
        )
    return rollouts, records, samples


def summarize(records: list[Record], buffers: TaskBuffers) -> dict[str, float]:
    """Per type and role: rates, mean reward, learnability and response length; buffer sizes."""
    out: dict[str, float] = {}
    for key in sorted({r.key for r in records}):
        rs = [r for r in records if r.key == key]
        out[f"{key}/format_rate"] = sum(r.parsed for r in rs) / len(rs)
        out[f"{key}/reward"] = sum(r.reward for r in rs) / len(rs)
        out[f"{key}/length"] = sum(r.length for r in rs) / len(rs)
        if key.endswith("/propose"):
            good = [r for r in rs if r.success]
            out[f"{key}/valid_rate"] = len(good) / len(rs)
            if good:
                out[f"{key}/solve_rate"] = sum(r.solve_rate for r in good) / len(good)
                out[f"{key}/learnability"] = sum(r.reward for r in good) / len(good)
        else:
            out[f"{key}/solve_rate"] = sum(r.success for r in rs) / len(rs)
    for kind, size in buffers.sizes().items():
        out[f"buffer/{kind}"] = float(size)
    return out
