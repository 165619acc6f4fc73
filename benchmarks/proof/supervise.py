"""How the proof runs its jobs: each in its own process group under a wall-clock deadline, its
output appended to a log, its result merged into proof.json as soon as it is known.

- `Budget` shares the seconds left among the jobs still to run in proportion to their planned
  seconds (at most `stretch` times the plan), so time a job leaves unused goes to the later
  ones and a job that overruns is stopped at its share.
- `run_command` runs one command and kills its process group at the deadline.
- `run_parts` runs measurement parts (`python -m benchmarks.proof PART...`) in one process: the
  child reports each part's start and result through a state file, the parent gives each part
  its own deadline, and after a part crashes or overruns it starts a fresh process for the parts
  left, so one part's failure never costs another's result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.2
STARTUP_S = 60.0  # a measurement process's imports (and CUDA start-up) before its first part


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file, rename), so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@dataclass
class Budget:
    """The proof's clock: `total_s` for all jobs in `plan` (name -> planned seconds), minus
    `keep_s` kept for the report at the end."""

    total_s: float
    plan: dict[str, float]
    stretch: float = 1.0
    keep_s: float = 0.0
    t0: float = field(default_factory=time.monotonic)
    done: set[str] = field(default_factory=set)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def left(self) -> float:
        """Seconds left for the jobs (the report's share excluded)."""
        return max(0.0, self.total_s - self.keep_s - self.elapsed())

    def share(self, name: str) -> float:
        """This job's seconds: the time left split by plan over it and the jobs after it."""
        todo = sum(s for n, s in self.plan.items() if n not in self.done)
        planned = self.plan[name]
        return min(self.left() * planned / max(todo, 1e-9), planned * self.stretch)

    def finish(self, name: str) -> None:
        self.done.add(name)


@dataclass
class Outcome:
    rc: int | None
    timed_out: bool
    wall_s: float


def _kill(proc: subprocess.Popen) -> None:
    """SIGTERM to the child's process group, SIGKILL after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def child_env() -> dict[str, str]:
    """The environment of every child: the project importable, one line per log write."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_command(argv: list[str], log: Path, deadline: Callable[[], float]) -> Outcome:
    """Run `argv` from the project root, output appended to `log`; kill its process group when
    `time.monotonic()` passes `deadline()` (asked again at every poll)."""
    start = time.monotonic()
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, cwd=ROOT, env=child_env(), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline():
                    _kill(proc)
                    return Outcome(proc.returncode, True, time.monotonic() - start)
                time.sleep(POLL_S)
        except BaseException:
            _kill(proc)
            raise
    return Outcome(proc.returncode, False, time.monotonic() - start)


class _Process:
    """One child process of `run_parts`: which part it runs, since when, until when."""

    def __init__(self, todo: list[str], budget: Budget, state: Path, record) -> None:
        self.todo, self.budget, self.state, self.record = todo, budget, state, record
        self.size = len(todo)
        now = time.monotonic()
        self.seen = {"": now}  # part -> when the parent first saw it running ("": the start)
        self.deadlines = {"": now + min(STARTUP_S, budget.left())}  # until a part starts

    def poll(self) -> float:
        """Record the results the child has written; the deadline of the part under way."""
        st = read_json(self.state)
        for name, result in st.get("results", {}).items():
            if name in self.todo:
                self.finish(name, result)
        running = st.get("running", "")
        if running in self.todo and running not in self.deadlines:
            self.seen[running] = time.monotonic()
            self.deadlines[running] = self.seen[running] + self.budget.share(running)
        return self.deadlines.get(running, self.deadlines[""])

    def finish(self, name: str, result: dict[str, Any]) -> None:
        began = self.seen.get(name, self.seen[""])
        share = self.deadlines[name] - began if name in self.deadlines else self.budget.share(name)
        now = time.monotonic()
        result = {"status": "ok", "budget_s": round(share, 1), "wall_s": round(now - began, 1),
                  **result}  # fmt: skip
        self.todo.remove(name)
        self.budget.finish(name)
        self.record(name, result)

    def failed(self, outcome: Outcome) -> None:
        """After the child ended with parts left: the part it was running crashed or overran;
        if no part had started, the child could not start and every part left fails. (A part
        that raised has already been recorded; the next process simply starts after it.)"""
        running = read_json(self.state).get("running", "")
        started = len(self.seen) > 1 or len(self.todo) < self.size
        why = "timed out" if outcome.timed_out else f"crashed (exit code {outcome.rc})"
        names = [running] if running in self.todo else [] if started else list(self.todo)
        for name in names:
            self.finish(name, {"status": why + "; see proof.log"})


def run_parts(
    parts: list[str],
    budget: Budget,
    log: Path,
    state: Path,
    mini: bool,
    record: Callable[[str, dict[str, Any]], None],
) -> None:
    """Run measurement `parts` in as few processes as their failures allow; `record(part,
    result)` gets every part's result (or its failure) as soon as it is known."""
    todo = list(parts)
    while todo:
        state.unlink(missing_ok=True)
        child = _Process(todo, budget, state, record)
        argv = [sys.executable, "-m", "benchmarks.proof", "--state", str(state)]
        outcome = run_command(argv + (["--mini"] if mini else []) + todo, log, child.poll)
        child.poll()
        if todo:  # the next process starts after the part that failed
            child.failed(outcome)
