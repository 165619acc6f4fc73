"""Host-side comparison of program outputs and answers, by value, without ever evaluating code.

Both sides are `repr` strings (from the sandbox, from a dataset or from a model). Each is parsed
with `ast.literal_eval` (literals only: numbers, strings, bytes, tuples, lists, dicts, sets,
booleans, None); two literals are equal when their values are `==`, like Absolute Zero's check.
When either side is not a literal (e.g. `nan`, `<object at 0x..>`, a custom class repr) the
strings are compared after stripping surrounding whitespace. Inputs larger than `MAX_CHARS` are
compared as strings, so a hostile answer cannot make the host parse megabytes.
"""

from __future__ import annotations

import ast
from typing import Any

MAX_CHARS = 1_000_000

_MISSING = object()


def parse_literal(text: str, max_chars: int = MAX_CHARS) -> Any:
    """The value of a literal `repr`, or `_MISSING` when `text` is not a (small enough) literal."""
    if not isinstance(text, str) or len(text) > max_chars:
        return _MISSING
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _MISSING


def is_literal(text: str) -> bool:
    return parse_literal(text) is not _MISSING


def outputs_equal(a: str | None, b: str | None) -> bool:
    """Whether two output `repr`s denote the same value (None never equals anything)."""
    if a is None or b is None:
        return False
    va, vb = parse_literal(a), parse_literal(b)
    if va is _MISSING or vb is _MISSING:
        return a.strip() == b.strip()
    try:
        return bool(va == vb)
    except (RecursionError, MemoryError, TypeError, ValueError):
        return False
