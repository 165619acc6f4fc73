"""Validating proposals and checking answers, only through the sandboxed executor.

A proposal is valid (AZR sec. 3.3.3) when the program parses, passes the executor's static
checks (allowed imports, no banned constructs), runs on its input(s) within the limits, returns
a value other than None, and gives the same output in two workers with different hash seeds
(`Executor.validate`). Induction keeps the distinct inputs that pass and needs at least
`min_pairs` of them. Answers are compared by value on the host (the executor's
`check_*`: `ast.literal_eval`, never `eval`); abduction and induction answers run in the sandbox.
Answer checks fan out over threads: the executor is thread-safe and runs them in parallel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TypeVar

from reasoning.azr.tasks import Task
from reasoning.executor import ExecutionResult, Executor

T = TypeVar("T")
R = TypeVar("R")
THREADS = 8  # concurrent answer checks (the executor spreads each over its own workers)


def _map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    if len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(fn, items))


def _value(res: ExecutionResult) -> tuple[str | None, str]:
    """The output of a validation result, or None and why it does not count."""
    if res.status != "ok":
        return None, f"{res.status}: {res.reason}"[:200]
    if res.output is None or res.output.strip() == "None":
        return None, "returns None"
    return res.output, ""


def validate_tasks(
    ex: Executor, tasks: Sequence[Task], min_pairs: int = 6, max_chars: int = 0
) -> list[tuple[Task | None, str]]:
    """Each proposed task with its outputs filled in, or (None, reason).

    `max_chars > 0` also rejects tasks longer than that (program + pairs + message), which
    keeps buffer prompts short (AZR likewise drops tasks whose prompt exceeds its length cap).
    """
    jobs = [(i, t.program, inp) for i, t in enumerate(tasks) for inp in dict.fromkeys(t.inputs)]
    results = ex.validate_many([(code, inp) for _, code, inp in jobs])
    per_task: list[list[tuple[str, str | None, str]]] = [[] for _ in tasks]
    for (i, _, inp), res in zip(jobs, results):
        per_task[i].append((inp, *_value(res)))
    done: list[tuple[Task | None, str]] = []
    for t, runs in zip(tasks, per_task):
        good = [(inp, out) for inp, out, _ in runs if out is not None]
        need = min_pairs if t.kind == "induction" else 1
        if len(good) < need:
            why = next((w for _, o, w in runs if o is None), "too few distinct inputs")
            done.append((None, why))
            continue
        task = replace(t, inputs=[i for i, _ in good], outputs=[o for _, o in good])
        if max_chars and task.chars > max_chars:
            done.append((None, f"task too long ({task.chars} > {max_chars} characters)"))
            continue
        done.append((task, ""))
    return done


def _check_one(ex: Executor, task: Task, answer: str | None) -> bool:
    if answer is None:
        return False
    if task.kind == "deduction":
        return ex.check_deduction(task.program, task.input, answer.strip(), task.output).correct
    if task.kind == "abduction":
        return ex.check_abduction(task.program, answer.strip(), task.output).correct
    return ex.check_induction(answer, list(zip(task.inputs, task.outputs))).correct


def check_answers(ex: Executor, tasks: Sequence[Task], answers: Sequence[str | None]) -> list[bool]:
    """Correctness of each solver answer (induction: the program on every pair, held-out too)."""
    return _map(lambda ta: _check_one(ex, *ta), list(zip(tasks, answers)))
