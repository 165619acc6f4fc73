"""`Executor`: the public face of the sandboxed Python executor (Absolute Zero's code runner).

`run(code, inputs)` executes the module `code` and then `f(<inputs>)` in a fresh forked child of
a sandboxed worker and returns the output's `repr`; `validate` additionally runs it a second time
on another worker (another process, address layout and `PYTHONHASHSEED`) and demands equal values,
which catches `random`, `time`, `id()`, string hashes, set order and `repr(object())`. Batch
methods spread jobs over every worker; the answer checks of the three AZR task types live in
`checks.py`. The static layer (`static.py`) can be switched off to test the sandbox alone.

Left out: reward shaping and task bookkeeping (they belong to the self-play loop).
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from . import checks
from .compare import outputs_equal
from .pool import WorkerPool
from .results import (
    ERROR,
    NONDETERMINISTIC,
    OK,
    REJECTED,
    STATUSES,
    CheckResult,
    ExecutionResult,
    InductionResult,
)
from .sandbox import plan_sandbox
from .seccomp import compiled_filters
from .static import StaticLimits, check_program

log = logging.getLogger(__name__)
MAX_TRANSPORT_CHARS = 4_000_000

FALLBACK_WARNING = (
    "EXECUTOR SANDBOX DEGRADED: bubblewrap/user namespaces are unavailable, so model-written "
    "programs run WITHOUT filesystem, network, pid or user isolation (only rlimits, seccomp and "
    "the wall-clock kill remain); they can read host files. Install bubblewrap "
    "(apt-get install bubblewrap) before self-play."
)


class Executor:
    """A pool of sandboxed workers that run model-written programs. Thread-safe.

    `with Executor(workers=2, timeout=1.0, static_checks=True) as ex: ex.run(code, "[1, 2]")`.
    `sandbox` is "auto" (bwrap, else the warned fallback), "bwrap" (required) or "none".
    `protections` tells which layers are active.
    """

    def __init__(
        self,
        workers: int = 2,
        timeout: float = 1.0,
        static_checks: bool = True,
        *,
        memory_mb: int = 512,
        max_output_chars: int = 100_000,
        file_size_kb: int = 1024,
        open_files: int = 64,
        scratch_mb: int = 16,
        sandbox: str = "auto",
        python: str | None = None,
        limits: StaticLimits | None = None,
    ) -> None:
        if workers < 1 or timeout <= 0:
            raise ValueError("workers must be >= 1 and timeout > 0")
        self.timeout, self.static_checks = float(timeout), static_checks
        self.limits = limits or StaticLimits()
        plan = plan_sandbox(sandbox, python, scratch_mb)
        if plan.kind != "bwrap":
            warnings.warn(FALLBACK_WARNING, RuntimeWarning, stacklevel=2)
            log.warning(FALLBACK_WARNING)
        filters = compiled_filters()
        if filters is None:
            log.warning("executor: libseccomp unavailable, programs run WITHOUT seccomp")
        config = {
            "memory_bytes": memory_mb << 20,
            "file_bytes": file_size_kb << 10,
            "open_files": open_files,
            "max_output": max_output_chars,
            "worker_filter": filters[0].hex() if filters else "",
            "child_filter": filters[1].hex() if filters else "",
            "child_full_filter": filters[2].hex() if filters else "",
        }
        self._pool = WorkerPool(plan, workers, config, self.timeout)
        info = self._pool.worker_info
        self.protections: dict[str, bool] = {
            "static_checks": static_checks,
            **plan.protections,
            "seccomp": bool(filters) and bool(info.get("seccomp")),
        }
        self.sandbox_kind, self.python = plan.kind, plan.python
        self._lock = threading.Lock()  # submissions come from callback threads too
        self.submitted = 0  # programs sent to a sandboxed worker (statically rejected: not)

    # -- single programs -------------------------------------------------------------------

    def _static(self, code: str, inputs: str) -> ExecutionResult | None:
        if not self.static_checks:
            if not isinstance(code, str) or not isinstance(inputs, str):
                return ExecutionResult(REJECTED, reason="code and inputs must be strings")
            return None
        reason = check_program(code, inputs, self.limits)
        return None if reason is None else ExecutionResult(REJECTED, reason=reason)

    def _submit(self, code: str, inputs: str, avoid: int | None = None) -> Future:
        """Future of (ExecutionResult, worker id); static checks are the caller's business."""
        with self._lock:
            self.submitted += 1
            rid = self.submitted
        request = {"id": rid, "code": code, "inputs": inputs, "timeout": self.timeout}
        if len(code) + len(inputs) > MAX_TRANSPORT_CHARS:  # holds with static checks off too
            done: Future = Future()
            done.set_result((ExecutionResult(REJECTED, reason="program too large to send"), 0))
            return done
        result: Future = Future()
        raw = self._pool.submit(request, avoid)
        raw.add_done_callback(lambda f: _settle(result, f, lambda r: (_result(r[0]), r[1])))
        return result

    def _run_async(self, code: str, inputs: str) -> Future:
        if rejected := self._static(code, inputs):
            done: Future = Future()
            done.set_result(rejected)
            return done
        result: Future = Future()
        self._submit(code, inputs).add_done_callback(lambda f: _settle(result, f, lambda r: r[0]))
        return result

    def _validate_async(self, code: str, inputs: str) -> Future:
        final: Future = Future()
        if rejected := self._static(code, inputs):
            final.set_result(rejected)
            return final

        def after_first(fut: Future) -> None:
            if fut.exception() is not None:
                final.set_exception(fut.exception())  # type: ignore[arg-type]
                return
            first, worker = fut.result()
            if not first.ok:
                final.set_result(first)
                return
            second = self._submit(code, inputs, avoid=worker)
            second.add_done_callback(lambda g: _settle(final, g, lambda r: _agree(first, r[0])))

        self._submit(code, inputs).add_done_callback(after_first)
        return final

    def run(self, code: str, inputs: str = "") -> ExecutionResult:
        """Run module `code`, then `f(<inputs>)`; `output` is the result's `repr`."""
        return self._run_async(code, inputs).result()

    def validate(self, code: str, inputs: str = "") -> ExecutionResult:
        """`run`, plus a second run on another worker (other hash seed) with an equal output."""
        return self._validate_async(code, inputs).result()

    # -- batches: every worker busy ----------------------------------------------------------

    def run_many(self, jobs: Sequence[tuple[str, str]]) -> list[ExecutionResult]:
        """`run` for each (code, inputs), in order, spread over all workers."""
        return [f.result() for f in [self._run_async(c, i) for c, i in jobs]]

    def validate_many(self, jobs: Sequence[tuple[str, str]]) -> list[ExecutionResult]:
        """`validate` for each (code, inputs), in order, spread over all workers."""
        return [f.result() for f in [self._validate_async(c, i) for c, i in jobs]]

    # -- Absolute Zero answer checks -----------------------------------------------------------

    def check_deduction(
        self, code: str, inputs: str, answer: str, gold_output: str | None = None
    ) -> CheckResult:
        """Is `answer` (a predicted output repr) the value of `f(<inputs>)`?"""
        return checks.check_deduction(self, code, inputs, answer, gold_output)

    def check_abduction(self, code: str, answer_inputs: str, gold_output: str) -> CheckResult:
        """Does `f(<answer_inputs>)` equal `gold_output` by value?"""
        return checks.check_abduction(self, code, answer_inputs, gold_output)

    def check_induction(self, program: str, cases: Sequence[tuple[str, str]]) -> InductionResult:
        """Does the solver's `program` map every held-out (inputs, gold output) case right?"""
        return checks.check_induction(self, program, cases)

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Kill every worker and its sandbox; idempotent."""
        self._pool.close()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _settle(target: Future, source: Future, convert: Any) -> None:
    """Complete `target` from `source` through `convert` (exceptions pass through)."""
    try:
        target.set_result(convert(source.result()))
    except BaseException as exc:  # noqa: B036 - hand every failure to the waiting caller
        target.set_exception(exc)


def _agree(first: ExecutionResult, second: ExecutionResult) -> ExecutionResult:
    """The verdict of `validate` from its two runs on different workers."""
    duration = first.duration + second.duration
    if not second.ok:
        reason = f"first run ok, second run {second.status}: {second.reason}"
        return ExecutionResult(NONDETERMINISTIC, None, reason[:1000], duration)
    if not outputs_equal(first.output, second.output):
        a, b = str(first.output)[:200], str(second.output)[:200]
        return ExecutionResult(
            NONDETERMINISTIC, None, f"outputs differ across runs: {a!r} vs {b!r}", duration
        )
    return ExecutionResult(OK, first.output, "", duration)


def _result(reply: dict[str, Any]) -> ExecutionResult:
    status = reply.get("status")
    if status not in STATUSES:
        return ExecutionResult(ERROR, reason=f"worker sent unknown status {status!r}")
    output = reply.get("output") if status == OK else None
    if status == OK and not isinstance(output, str):
        return ExecutionResult(ERROR, reason="worker sent an ok result without output")
    return ExecutionResult(
        status, output, str(reply.get("reason", ""))[:1000], float(reply.get("duration", 0.0))
    )
