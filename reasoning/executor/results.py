"""Structured results of the executor: one execution, one answer check, one induction check.

Statuses are plain strings so that results serialise to JSON as they are. Nothing here runs code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Status = Literal["ok", "error", "timeout", "rejected", "nondeterministic", "output-limit"]

OK: Status = "ok"
ERROR: Status = "error"
TIMEOUT: Status = "timeout"
REJECTED: Status = "rejected"
NONDETERMINISTIC: Status = "nondeterministic"
OUTPUT_LIMIT: Status = "output-limit"
STATUSES: tuple[Status, ...] = (OK, ERROR, TIMEOUT, REJECTED, NONDETERMINISTIC, OUTPUT_LIMIT)


@dataclass(frozen=True)
class ExecutionResult:
    """Outcome of running `f(<inputs>)` for one program.

    `output` is the `repr` of the returned value when `status == "ok"`, else None; `reason` says
    why anything else happened (exception, signal, rejected construct, ...); `duration` is the
    wall-clock seconds spent in the sandbox (0 for static rejections).
    """

    status: Status
    output: str | None = None
    reason: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass(frozen=True)
class CheckResult:
    """Outcome of checking a solver's answer (deduction or abduction).

    `correct` is True only when the program ran ok and its output equals `expected` by value.
    """

    correct: bool
    status: Status
    output: str | None
    expected: str
    reason: str = ""


@dataclass(frozen=True)
class InductionResult:
    """Outcome of running a solver-written program on held-out (inputs, gold output) cases."""

    correct: bool
    passed: int
    total: int
    cases: list[CheckResult] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.passed / self.total if self.total else 0.0
