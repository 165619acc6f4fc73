"""Absolute Zero tasks and their buffers (Zhao et al. 2025, sec. 3.2-3.3).

Three task types over one program `f`:
- deduction: program + input -> output;
- abduction: program + output -> an input that produces it;
- induction: message + visible (input, output) pairs -> the program; the proposer writes 10
  inputs, the solver sees the first `n_visible` pairs, the rest are held out.

Inputs are argument strings as AZR writes them (`"[3, 1, 2], 'a'"` for `f([3, 1, 2], 'a')`);
outputs are the `repr` of the value returned in the sandbox. Each type keeps a buffer seeded with
the identity program (optionally also from AZR's seed files); the proposer is shown K references
drawn uniformly, the solver is fed the newest tasks first. Buffers serialise to plain dicts of
str/int so they can live in a `weights_only` checkpoint.
Left out on purpose: AZR's composite-function seeding and the answer-diversity reward.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

KINDS = ("deduction", "abduction", "induction")
ROLES = ("propose", "solve")
GROUPS = tuple(f"{k}/{r}" for k in KINDS for r in ROLES)  # the six advantage baselines

IDENTITY = "def f(x):\n    return x"
IDENTITY_INPUTS = ("'Hello world'", "1", "[1, 2, 3]", "(4, 5)", "'abc'")
IDENTITY_INPUTS += ("{'a': 1}", "2.5", "True", "[[0], []]", "-7")


@dataclass
class Task:
    """One task; deduction/abduction hold one (input, output) pair, induction several."""

    kind: str
    program: str
    inputs: list[str]
    outputs: list[str] = field(default_factory=list)
    message: str = ""  # induction only: the proposer's hint to the solver
    step: int = 0  # training step at which the task entered its buffer

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown task kind '{self.kind}' (one of {KINDS})")

    @property
    def input(self) -> str:
        return self.inputs[0]

    @property
    def output(self) -> str:
        return self.outputs[0]

    @property
    def chars(self) -> int:
        """Size of everything a prompt shows of this task (program, pairs, message)."""
        return len(self.program) + sum(map(len, self.inputs + self.outputs)) + len(self.message)

    def identity(self) -> tuple:
        return (self.program.strip(), tuple(i.strip() for i in self.inputs), self.message)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Task:
        return cls(**d)


def seed_tasks(n_inputs: int = 10) -> list[Task]:
    """The identity program as the one seed of every buffer (AZR's minimal seed)."""
    one = [IDENTITY_INPUTS[0]]
    ind = list(IDENTITY_INPUTS[:n_inputs])
    return [
        Task("deduction", IDENTITY, one, list(one)),
        Task("abduction", IDENTITY, one, list(one)),
        Task("induction", IDENTITY, ind, list(ind), "Return the argument unchanged."),
    ]


def load_seed_file(path: str | Path, limit: int = 0) -> list[Task]:
    """Tasks from an AZR seed JSONL (`snippet` + `input`/`output`, or `inputs`/`outputs`/`message`).

    Single-pair rows become a deduction and an abduction task, multi-pair rows induction tasks.
    Outputs are kept as written; re-validate them in the executor to get canonical reprs.
    """
    out: list[Task] = []
    with open(path) as fh:
        for line in fh:
            if limit and len(out) >= limit:
                break
            row = json.loads(line)
            prog = row["snippet"]
            if "inputs" in row:
                out.append(Task("induction", prog, row["inputs"], row["outputs"], row["message"]))
            else:
                for kind in ("deduction", "abduction"):
                    out.append(Task(kind, prog, [row["input"]], [row["output"]]))
    return out


class TaskBuffers:
    """One append-only buffer per task type, with duplicate tasks dropped."""

    def __init__(self, tasks: Iterable[Task] = ()) -> None:
        self.buffers: dict[str, list[Task]] = {k: [] for k in KINDS}
        self._seen: set[tuple] = set()
        self.add(tasks)

    def add(self, tasks: Iterable[Task]) -> int:
        """Append new tasks (in order) to their buffers; returns how many were new."""
        n = 0
        for t in tasks:
            key = (t.kind, *t.identity())
            if key in self._seen:
                continue
            self._seen.add(key)
            self.buffers[t.kind].append(t)
            n += 1
        return n

    def __len__(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    def sizes(self) -> dict[str, int]:
        return {k: len(b) for k, b in self.buffers.items()}

    def references(self, kind: str, k: int, rng: random.Random) -> list[Task]:
        """K reference tasks for the proposer, drawn uniformly without replacement."""
        buf = self.buffers[kind]
        return rng.sample(buf, min(k, len(buf)))

    def programs(self, rng: random.Random, n: int) -> list[Task]:
        """`n` programs for induction proposals, drawn uniformly from deduction + abduction."""
        pool = self.buffers["deduction"] + self.buffers["abduction"]
        return [rng.choice(pool) for _ in range(n)] if pool else []

    def newest(self, kind: str, n: int, skip: int = 0) -> list[Task]:
        """The `n` newest tasks after skipping `skip` (newest first), cycling a short buffer."""
        buf = self.buffers[kind]
        if not buf:
            return []
        return [buf[-1 - (i % len(buf))] for i in range(skip, skip + n)]

    def state_dict(self) -> dict[str, str]:
        """Plain strings (JSON) per type, safe for a `weights_only` checkpoint."""
        return {k: json.dumps([t.to_dict() for t in b]) for k, b in self.buffers.items()}

    @classmethod
    def from_state_dict(cls, state: dict[str, str]) -> TaskBuffers:
        return cls(Task.from_dict(d) for k in KINDS for d in json.loads(state.get(k, "[]")))
