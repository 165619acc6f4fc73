"""Static checks run on the host before a program reaches the sandbox.

A cheap first layer that turns away most hostile or off-format programs with a reason, and keeps
model programs in the Absolute Zero style (a pure function `f` over literals). It parses the code
(never runs it), then rejects: oversize code or inputs, syntax errors, a missing top-level `f`,
imports outside `ALLOWED_MODULES`, forbidden builtins (`eval`, `open`, `getattr`, ...), dunder
names and attributes outside a small list of special-method names, private or reflective
attributes (`_sys`, `gi_frame`, `f_globals`, ...), string constants that spell such names, and
inputs that are not literal call arguments (checked with `ast.literal_eval`).

What it deliberately leaves out: proving a program safe. Python has too many reflective paths for
a syntactic filter to close; the sandbox (namespaces, seccomp, rlimits) is the security boundary,
and it must hold with these checks switched off.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

ALLOWED_MODULES = frozenset(
    {
        "abc", "array", "bisect", "calendar", "cmath", "collections", "copy", "dataclasses",
        "datetime", "decimal", "enum", "fractions", "functools", "heapq", "itertools", "json",
        "math", "numbers", "operator", "re", "statistics", "string", "textwrap", "typing",
        "unicodedata",
    }
)  # fmt: skip

FORBIDDEN_NAMES = frozenset(
    {
        "eval", "exec", "compile", "open", "globals", "locals", "vars", "getattr", "setattr",
        "delattr", "breakpoint", "memoryview", "exit", "quit", "help",
        # reflective helpers that reach attributes by runtime strings or evaluate strings
        "attrgetter", "methodcaller", "get_type_hints", "ForwardRef", "_eval_type", "Formatter",
    }
)  # fmt: skip

FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "sys", "os", "builtins", "modules", "system", "popen", "attrgetter", "methodcaller",
        "get_type_hints", "ForwardRef", "f_globals", "f_locals", "f_builtins", "f_back",
        "f_code", "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code",
        "tb_frame", "tb_next", "co_code", "co_consts", "mro", "Formatter", "get_field", "vformat",
    }
)  # fmt: skip

# Special-method names a benign program may call or read explicitly (super().__init__(), ...).
ALLOWED_DUNDERS = frozenset(
    f"__{n}__"
    for n in (
        "init new post_init len iter next reversed contains getitem setitem delitem missing "
        "repr str format hash bool int float index round eq ne lt le gt ge neg pos abs invert "
        "add sub mul matmul truediv floordiv mod divmod pow lshift rshift and or xor radd rsub "
        "rmul rtruediv rfloordiv rmod rpow iadd isub imul itruediv ifloordiv imod call enter "
        "exit name doc slots match_args all main"
    ).split()
)

_DUNDER_IN_TEXT = re.compile(r"__[A-Za-z][A-Za-z0-9_]*?__")


@dataclass(frozen=True)
class StaticLimits:
    """Size caps of the static layer (characters)."""

    max_code_chars: int = 20_000
    max_input_chars: int = 10_000
    max_nodes: int = 20_000


def _dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _bad_identifier(name: str) -> str | None:
    if name in FORBIDDEN_NAMES:
        return f"forbidden name {name!r}"
    if _dunder(name) and name not in ALLOWED_DUNDERS:
        return f"forbidden dunder name {name!r}"
    return None


def _bad_attribute(node: ast.Attribute) -> str | None:
    attr = node.attr
    if attr in FORBIDDEN_ATTRIBUTES:
        return f"forbidden attribute {attr!r}"
    if _dunder(attr):
        return None if attr in ALLOWED_DUNDERS else f"forbidden dunder attribute {attr!r}"
    if attr.startswith("_"):
        owner = node.value
        if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
            return f"private attribute {attr!r} outside self/cls"
    return None


def _bad_import(node: ast.Import | ast.ImportFrom) -> str | None:
    if isinstance(node, ast.ImportFrom):
        if node.level:
            return "relative import"
        modules = [node.module or ""]
        names = [a.name for a in node.names]
    else:
        modules = [a.name for a in node.names]
        names = []
    for module in modules:
        if module.split(".")[0] not in ALLOWED_MODULES:
            return f"import of {module!r} is not allowed"
    for name in names:
        if name == "*":
            return "star import"
        reason = _bad_identifier(name)
        if reason or name.startswith("_"):
            return reason or f"import of private name {name!r}"
    return None


def _bad_node(node: ast.AST) -> str | None:
    if isinstance(node, ast.Import | ast.ImportFrom):
        return _bad_import(node)
    if isinstance(node, ast.Name):
        return _bad_identifier(node.id)
    if isinstance(node, ast.Attribute):
        return _bad_attribute(node)
    if isinstance(node, ast.arg):
        return _bad_identifier(node.arg)
    if isinstance(node, ast.alias) and node.asname:
        return _bad_identifier(node.asname)
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return None if node.name not in FORBIDDEN_NAMES else f"forbidden name {node.name!r}"
    if isinstance(node, ast.Global | ast.Nonlocal):
        for name in node.names:
            if reason := _bad_identifier(name):
                return reason
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
        for match in _DUNDER_IN_TEXT.findall(text):
            if match not in ALLOWED_DUNDERS:
                return f"string constant spells {match!r}"
    return None


def _defines_f(tree: ast.Module) -> bool:
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and stmt.name == "f":
            return True
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "f" for t in stmt.targets
        ):
            return True
    return False


def check_code(code: str, limits: StaticLimits = StaticLimits()) -> str | None:
    """None when `code` passes, else the reason it is rejected."""
    if not isinstance(code, str):
        return "code is not a string"
    if len(code) > limits.max_code_chars:
        return f"code has {len(code)} characters (limit {limits.max_code_chars})"
    try:
        tree = ast.parse(code, mode="exec")
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes
        return f"syntax error: {exc}"
    except (RecursionError, MemoryError):
        return "syntax error: code nests too deeply"
    if not _defines_f(tree):
        return "no top-level function f"
    for count, node in enumerate(ast.walk(tree)):
        if count >= limits.max_nodes:
            return f"code has more than {limits.max_nodes} syntax nodes"
        if reason := _bad_node(node):
            return reason
    return None


def check_inputs(
    inputs: str, limits: StaticLimits = StaticLimits(), literal_only: bool = False
) -> str | None:
    """None when `inputs` are acceptable call arguments for `f` (`"[1, 2], 'a'"`, `"x=3"`, `""`).

    Arguments should be literals (`ast.literal_eval`). A non-literal argument (CRUXEval has a few:
    `dict(a=1)`, `'a' * 20`, `lambda x: x < 2`) is accepted only when it passes the same checks
    as code, and never when `literal_only`.
    """
    if not isinstance(inputs, str):
        return "inputs is not a string"
    if len(inputs) > limits.max_input_chars:
        return f"inputs have {len(inputs)} characters (limit {limits.max_input_chars})"
    source = f"f({inputs}\n)"
    try:
        call = ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return f"inputs do not parse as call arguments: {type(exc).__name__}"
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "f"):
        return "inputs do not parse as call arguments"
    if any(isinstance(a, ast.Starred) for a in call.args) or any(
        k.arg is None for k in call.keywords
    ):
        return "inputs use * or ** unpacking"
    for value in [*call.args, *(k.value for k in call.keywords)]:
        try:
            ast.literal_eval(value)
            continue
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            pass
        segment = ast.get_source_segment(source, value)
        if literal_only:
            return f"input {segment!r} is not a literal"
        for count, node in enumerate(ast.walk(value)):
            if count >= limits.max_nodes:
                return f"input {segment!r} is too large"
            if reason := _bad_node(node):
                return f"non-literal input {segment!r}: {reason}"
    return None


def check_program(
    code: str, inputs: str, limits: StaticLimits = StaticLimits(), literal_only: bool = False
) -> str | None:
    """None when both the program and its inputs pass the static layer, else the reason."""
    reason = check_code(code, limits)
    if reason is None:
        reason = check_inputs(inputs, limits, literal_only)
        if reason is not None:
            reason = f"inputs: {reason}"
    return reason
