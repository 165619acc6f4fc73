"""Sandboxed Python executor for Absolute Zero self-play (see README.md in this folder).

Public face: `Executor` (run / validate / batches / AZR answer checks) and its result dataclasses.
"""

from .compare import outputs_equal, parse_literal
from .executor import Executor
from .results import STATUSES, CheckResult, ExecutionResult, InductionResult, Status
from .static import StaticLimits, check_code, check_inputs, check_program

__all__ = [
    "STATUSES",
    "CheckResult",
    "ExecutionResult",
    "Executor",
    "InductionResult",
    "StaticLimits",
    "Status",
    "check_code",
    "check_inputs",
    "check_program",
    "outputs_equal",
    "parse_literal",
]
