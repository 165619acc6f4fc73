"""One Absolute Zero self-play step up to the rewards (Zhao et al. 2025, Algorithm 1).

propose (every task type, K references each) -> parse -> validate in the executor -> estimate
learnability with n solver samples per valid task -> add valid tasks to the buffers (gathered
from every process so all ranks hold the same buffers) -> solve the newest tasks of each type
-> check in the executor -> rewards. Returns scored `Rollout`s keyed by "type/role" (the six
task-relative baselines) and one plain `Record` per rollout for logging. The policy update and
advantages are the caller's (tools/train_azr.py), since advantages are normalised over all
processes. The learnability samples only score proposals; they are not trained on (as in AZR).
Every role samples at `pg.temperature`, the temperature the update takes its log-probs at.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from reasoning.azr.prompts import (
    Parsed,
    parse_answer,
    parse_proposal,
    proposer_prompt,
    solver_prompt,
)
from reasoning.azr.rewards import RewardConfig, proposer_reward, solver_reward
from reasoning.azr.tasks import KINDS, Task, TaskBuffers
from reasoning.azr.verify import check_answers, validate_tasks
from reasoning.executor import Executor
from reasoning.nano.world import NanoConfig
from reasoning.pg.rollout import Engine, Rollout, generate
from reasoning.pg.step import PGConfig
from unimodal.backbone import Backbone
from unimodal.pg.advantages import ESTIMATORS


@dataclass
class AZRConfig:
    """Self-play settings; the sampling temperature is the update's, `PGConfig.temperature`."""

    references: int = 6  # K past tasks shown to the proposer
    learnability_samples: int = 8  # n solver samples per proposal (at pg.temperature)
    n_inputs: int = 10  # inputs written by an induction proposer
    n_visible: int = 5  # pairs shown to the induction solver (the rest are held out)
    top_p: float = 1.0
    max_new_tokens: int = 64  # response budget of every role (paper: 8k)
    max_task_chars: int = 2000  # longer tasks (program + pairs + message) are invalid; 0: no cap
    gen_batch: int = 32  # prompts per generation call
    static_cache: bool = False  # rollouts decode into a preallocated KV cache
    compile_decode: bool = False  # ... with a compiled decode step (CUDA graphs on a GPU)
    seed_files: list[str] = field(default_factory=list)  # AZR seed JSONLs, added after identity
    seed_limit: int = 0  # rows read per seed file (0: all)
    estimator: str = "task_relative"  # eq. 8 | task_relative_tokens (the official code)
    sample_every: int = 10  # write example tasks and answers to samples.jsonl every N steps
    warmstart_steps: int = 0  # format warm-start updates before self-play (not in AZR; 0: off)
    warmstart_batch: int = 0  # (user turn, response) pairs per warm-start update; 0: 6 x batch
    warmstart_lr: float = 0.0  # the warm start's (and the control's) lr; 0: train.lr's schedule
    control: bool = False  # after self-play, rerun from the warm start for as long on more of it
    rewards: RewardConfig = field(default_factory=RewardConfig)
    nano: NanoConfig = field(default_factory=NanoConfig)  # nano-world seeds and held-out split

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"azr.estimator: unknown '{self.estimator}' ({list(ESTIMATORS)})")


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


def _single_process(items: list) -> list:
    return items


@dataclass
class SelfPlay:
    """What every self-play step shares: the executor, the settings and the process group.

    `gather` concatenates a list over the `world` processes (accelerate's `gather_object`) and
    is called by every rank; `pg.temperature` is the sampling temperature of every role.
    """

    executor: Executor
    cfg: AZRConfig
    pg: PGConfig
    gather: Callable[[list], list] = _single_process
    rank: int = 0
    world: int = 1
    head: str = "azr"  # the LoRA head that proposes and solves
    engine: Engine | None = None  # samples the rollouts instead of `bb` (reasoning.pg.engine)


def _user(bb: Backbone, text: str) -> str:
    return bb.render([{"role": "user", "content": text}])


def _generate(
    bb: Backbone, prompts: list[str], sp: SelfPlay, gen: torch.Generator | None
) -> list[Rollout]:
    c = sp.cfg
    return generate(
        bb, prompts, sp.head, c.max_new_tokens, sp.pg.temperature, c.top_p, c.gen_batch, gen,
        static=c.static_cache, compile=c.compile_decode, engine=sp.engine,
    )  # fmt: skip


def _solve(
    bb: Backbone,
    sp: SelfPlay,
    tasks: list[Task],
    times: dict[str, float],
    phase: str,
    gen: torch.Generator | None,
) -> tuple[list[Rollout], list[bool], list[bool]]:
    """Sample one answer per task; returns (rollouts, parsed flags, correct flags)."""
    prompts = [_user(bb, solver_prompt(t, sp.cfg.n_visible)) for t in tasks]
    with timed(times, phase):
        rolls = _generate(bb, prompts, sp, gen)
    answers = [parse_answer(t.kind, r.text)[0] for t, r in zip(tasks, rolls)]
    with timed(times, "check"):
        correct = check_answers(sp.executor, tasks, answers)
    return rolls, [a is not None for a in answers], correct


@dataclass
class _Proposals:
    """One step's proposals: (kind, induction program) per job, responses, parses, verdicts."""

    jobs: list[tuple[str, Task | None]]
    rollouts: list[Rollout]
    parsed: list[tuple[Task | None, Parsed]]
    valid: dict[int, Task] = field(default_factory=dict)  # job index -> validated task
    reasons: dict[int, str] = field(default_factory=dict)  # job index -> why validation failed
    rates: dict[int, float] = field(default_factory=dict)  # job index -> estimated solve rate


def _propose(
    bb: Backbone,
    buffers: TaskBuffers,
    sp: SelfPlay,
    per_rank: int,
    step: int,
    rng: random.Random,
    times: dict[str, float],
    gen: torch.Generator | None,
) -> _Proposals:
    """Propose `per_rank` tasks of every type (K references each), parse and validate them."""
    c = sp.cfg
    jobs: list[tuple[str, Task | None]] = []
    prompts: list[str] = []
    for kind in KINDS:
        programs = buffers.programs(rng, per_rank) if kind == "induction" else [None] * per_rank
        for prog in programs:
            refs = [] if kind == "induction" else buffers.references(kind, c.references, rng)
            jobs.append((kind, prog))
            prompts.append(_user(bb, proposer_prompt(kind, refs, prog, c.n_inputs)))
    with timed(times, "propose"):
        rolls = _generate(bb, prompts, sp, gen)
    parsed = [parse_proposal(k, r.text, p, c.n_inputs, step) for (k, p), r in zip(jobs, rolls)]
    out = _Proposals(jobs, rolls, parsed)
    cand = [i for i, (t, _) in enumerate(parsed) if t is not None]
    with timed(times, "validate"):
        todo = [parsed[i][0] for i in cand]
        checked = validate_tasks(sp.executor, todo, c.n_visible + 1, c.max_task_chars)
    out.valid = {i: t for i, (t, _) in zip(cand, checked) if t is not None}
    out.reasons = {i: why for i, (t, why) in zip(cand, checked) if t is None}
    return out


def _learnability(
    bb: Backbone,
    sp: SelfPlay,
    props: _Proposals,
    times: dict[str, float],
    gen: torch.Generator | None,
) -> None:
    """Estimate each valid task's solve rate from n solver samples (sets `props.rates`)."""
    n = sp.cfg.learnability_samples
    order = list(props.valid)
    tasks = [props.valid[i] for i in order for _ in range(n)]
    _, _, correct = _solve(bb, sp, tasks, times, "learnability", gen)
    props.rates = {i: sum(correct[j * n : (j + 1) * n]) / n for j, i in enumerate(order)}


def _score_proposals(
    props: _Proposals, rewards: RewardConfig
) -> tuple[list[Rollout], list[Record], list[dict]]:
    """Proposer rewards (eq. 6 with learnability, eq. 4), records and sample rows."""
    rollouts, records, rows = [], [], []
    for i, ((kind, _), roll) in enumerate(zip(props.jobs, props.rollouts)):
        ok, valid, rate = props.parsed[i][0] is not None, i in props.valid, props.rates.get(i)
        r = proposer_reward(ok, valid, rate, rewards)
        roll.key, roll.reward = f"{kind}/propose", r
        rollouts.append(roll)
        records.append(Record(roll.key, r, roll.length, ok, valid, props.rates.get(i, -1.0)))
        why = props.parsed[i][1].reason or props.reasons.get(i, "")
        task = props.valid.get(i)
        shown = {"program": task.program, "inputs": task.inputs[:3], "outputs": task.outputs[:3],
                 "message": task.message} if task else {}  # fmt: skip
        rows.append(
            {"kind": kind, "valid": valid, **shown, "why": why,
             "solve_rate": props.rates.get(i, -1.0), "reward": r, "response": roll.text}
        )  # fmt: skip
    return rollouts, records, rows


def _solve_newest(
    bb: Backbone,
    buffers: TaskBuffers,
    sp: SelfPlay,
    per_rank: int,
    times: dict[str, float],
    gen: torch.Generator | None,
) -> tuple[list[Rollout], list[Record], list[dict]]:
    """Solve this rank's share of the newest tasks of every type; solver rewards (eqs. 5-6)."""
    skip = sp.rank * per_rank
    tasks = [t for k in KINDS for t in buffers.newest(k, per_rank, skip=skip)]
    rolls, parsed, correct = _solve(bb, sp, tasks, times, "solve", gen)
    records, rows = [], []
    for t, roll, p, c in zip(tasks, rolls, parsed, correct):
        r = solver_reward(p, c, sp.cfg.rewards)
        roll.key, roll.reward = f"{t.kind}/solve", r
        records.append(Record(roll.key, r, roll.length, p, c))
        rows.append(
            {"kind": t.kind, "program": t.program, "inputs": t.inputs[:2],
             "outputs": t.outputs[:2], "response": roll.text, "correct": c, "reward": r}
        )  # fmt: skip
    return rolls, records, rows


def selfplay_step(
    bb: Backbone,
    buffers: TaskBuffers,
    sp: SelfPlay,
    batch: int,
    step: int,
    rng: random.Random,
    times: dict[str, float],
    gen: torch.Generator | None = None,
) -> tuple[list[Rollout], list[Record], dict[str, list[dict]]]:
    """Propose, validate, estimate learnability, grow the buffers, solve and score (one rank).

    `batch` tasks per (type, role) over all `sp.world` processes. Returns this rank's scored
    rollouts, one `Record` each, and sample rows per role for logging.
    """
    per_rank = -(-batch // sp.world)
    props = _propose(bb, buffers, sp, per_rank, step, rng, times, gen)
    _learnability(bb, sp, props, times, gen)
    rollouts, records, proposed = _score_proposals(props, sp.cfg.rewards)
    new = sp.gather([t.to_dict() for t in props.valid.values()])  # the same on every rank
    buffers.add(Task.from_dict(d) for d in new)
    solved = _solve_newest(bb, buffers, sp, per_rank, times, gen)
    return rollouts + solved[0], records + solved[1], {"propose": proposed, "solve": solved[2]}


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
