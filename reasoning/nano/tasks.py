"""Nano-world tasks for Absolute Zero: training draws and a disjoint held-out split.

Two walls keep the held-out split apart from everything trained on:
- by program text: `split_of(code)` hashes the program (SHA-256, stable across processes) and
  sends one text in `HELD_OUT_SHARE` to the held-out split; training draws skip those texts
  and held-out draws keep only them, so no program text is ever in both, for any seeds or sizes;
- by seed: the two splits draw from differently named random streams.

Outputs are never computed here: every task goes through the sandboxed executor
(`reasoning.azr.verify.validate_tasks`), which fills in the canonical outputs and drops programs
that fail, return None, or are not deterministic. Left out: error-prediction tasks (`code_e`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from reasoning.azr.tasks import KINDS, Task
from reasoning.azr.verify import validate_tasks
from reasoning.executor import Executor
from reasoning.nano.world import Program, distinct_inputs, make_input, make_program

HELD_OUT_SHARE = 5  # one program text in five belongs to the held-out split
SPLITS = ("train", "heldout")


def split_of(code: str) -> str:
    """'heldout' or 'train' for a program text (whitespace at either end ignored)."""
    digest = hashlib.sha256(code.strip().encode()).digest()
    return "heldout" if digest[0] % HELD_OUT_SHARE == 0 else "train"


def programs(
    split: str, n: int, difficulties: Sequence[int], seed: int = 0, stream: str = ""
) -> list[Program]:
    """`n` programs of `split`, cycling through `difficulties`; a pure function of the args."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got '{split}'")
    if not difficulties:
        raise ValueError("difficulties: give at least one level")
    rng = random.Random(f"nano/{split}/{stream}/{seed}")
    out: list[Program] = []
    while len(out) < n:
        p = make_program(rng, difficulties[len(out) % len(difficulties)])
        if split_of(p.code) == split:
            out.append(p)
    return out


def draft(kind: str, p: Program, rng: random.Random, n_inputs: int) -> Task:
    """An unvalidated task of `kind` for program `p` (outputs are the executor's job)."""
    if kind == "induction":
        return Task(kind, p.code, distinct_inputs(rng, p.arg, n_inputs), [], p.message)
    return Task(kind, p.code, [make_input(rng, p.arg)])


def make_tasks(
    ex: Executor,
    split: str,
    kind: str,
    n: int,
    difficulties: Sequence[int],
    seed: int = 0,
    n_inputs: int = 10,
    min_pairs: int = 6,
) -> list[Task]:
    """`n` distinct executor-validated tasks of `kind` from `split` (same args, same tasks)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got '{kind}'")
    rng = random.Random(f"nano-inputs/{split}/{kind}/{seed}")
    out: list[Task] = []
    seen: set[tuple] = set()
    rounds = 0
    while len(out) < n:
        rounds += 1
        if rounds > 50:
            raise RuntimeError(f"could not draw {n} distinct {split} {kind} tasks")
        batch = programs(split, n + n // 4 + 4, difficulties, seed + 7919 * rounds, kind)
        drafts = [draft(kind, p, rng, n_inputs) for p in batch]
        for t, _ in validate_tasks(ex, drafts, min_pairs):
            if t is not None and t.identity() not in seen and len(out) < n:
                seen.add(t.identity())
                out.append(t)
    return out


def split_tasks(
    ex: Executor,
    split: str,
    n: int,
    difficulties: Sequence[int],
    seed: int = 0,
    n_inputs: int = 10,
    min_pairs: int = 6,
) -> dict[str, list[Task]]:
    """`n` tasks of every type from `split`: the held-out set (`split="heldout"`, seed 0), or
    training tasks for the seed buffers and the warm start (`split="train"`)."""
    return {k: make_tasks(ex, split, k, n, difficulties, seed, n_inputs, min_pairs) for k in KINDS}
