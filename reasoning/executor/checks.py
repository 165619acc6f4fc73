"""Absolute Zero's answer checks for the three task types, on top of an `Executor`.

- deduction (program + input -> output): the solver's predicted output is compared by value with
  the program's actual output (computed in the sandbox unless the caller already has it);
- abduction (program + output -> input): the solver's input is run through the program in the
  sandbox and its output compared with the gold output;
- induction (input/output pairs -> program): the solver's program runs on the held-out inputs,
  all in one batch, and every output must equal its gold output.

Comparisons happen on the host by literal parsing (`compare.py`), never `eval`. Rewards (1/0,
format penalties) are left to the self-play loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .compare import outputs_equal
from .results import REJECTED, CheckResult, ExecutionResult, InductionResult
from .static import check_inputs

if TYPE_CHECKING:
    from .executor import Executor


def _judge(result: ExecutionResult, expected: str, reason: str = "") -> CheckResult:
    correct = result.ok and outputs_equal(result.output, expected)
    if not result.ok:
        reason = reason or f"{result.status}: {result.reason}"
    elif not correct:
        reason = reason or "output differs from the expected value"
    return CheckResult(correct, result.status, result.output, expected, reason)


def check_deduction(
    ex: Executor, code: str, inputs: str, answer: str, gold_output: str | None = None
) -> CheckResult:
    if not isinstance(answer, str):
        return CheckResult(False, REJECTED, None, "", "answer is not a string")
    if gold_output is None:
        gold = ex.run(code, inputs)
        if not gold.ok:
            return CheckResult(False, gold.status, None, "", f"program failed: {gold.reason}")
        gold_output = gold.output
    assert gold_output is not None
    correct = outputs_equal(answer, gold_output)
    reason = "" if correct else "answer differs from the program's output"
    return CheckResult(correct, "ok", answer, gold_output, reason)


def check_abduction(ex: Executor, code: str, answer_inputs: str, gold_output: str) -> CheckResult:
    if ex.static_checks and (reason := check_inputs(answer_inputs, ex.limits)):
        return CheckResult(False, REJECTED, None, gold_output, f"answer inputs: {reason}")
    return _judge(ex.run(code, answer_inputs), gold_output)


def check_induction(
    ex: Executor, program: str, cases: Sequence[tuple[str, str]]
) -> InductionResult:
    results = ex.run_many([(program, inputs) for inputs, _ in cases])
    judged = [_judge(r, gold) for r, (_, gold) in zip(results, cases)]
    passed = sum(c.correct for c in judged)
    return InductionResult(bool(cases) and passed == len(cases), passed, len(cases), judged)
