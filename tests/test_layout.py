"""The folder tree is the diagram: imports run one way, files and functions stay small.

Layers, lowest first: flow_matching <- unimodal <- reasoning <- evals, benchmarks <- tools. A module
may import its own layer and the layers below it (evals and benchmarks do not import each other);
no tool imports another, and nothing touches `sys.path`. Sizes: files at most 300 lines, functions at most 60, and each
training tool's `main` under 80.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "flow_matching": 0,
    "unimodal": 1,
    "reasoning": 2,
    "evals": 3,
    "benchmarks": 3,
    "tools": 4,
}
MAX_FILE, MAX_FUNCTION, MAX_MAIN = 300, 60, 80
SYS_PATH = re.compile(r"sys\.path\.(insert|append)|sys\.path\s*=")
TOOLS = ("train_gen", "train_mllm", "train_azr", "train_rm", "train_gen_rl")


def sources() -> list[Path]:
    return sorted(p for top in LAYERS for p in (ROOT / top).rglob("*.py"))


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level package) of every import, including those inside functions."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def upward_imports(top: str, source: str) -> list[str]:
    """The imports of a module in package `top` that break the layering."""
    bad = []
    for line, pkg in imported(ast.parse(source)):
        if pkg == top == "tools":
            bad.append(f"line {line}: a tool imports another tool")
        if pkg not in LAYERS or pkg == top:
            continue
        if LAYERS[pkg] > LAYERS[top] or LAYERS[pkg] == LAYERS[top]:
            bad.append(f"line {line}: imports {pkg}")
    if SYS_PATH.search(source):
        bad.append("touches sys.path")
    return bad


def test_the_checker_catches_an_upward_import():
    assert upward_imports("unimodal", "from reasoning.pg import estimate\n")
    assert upward_imports("reasoning", "def f():\n    import evals.vqa\n")
    assert upward_imports("evals", "from benchmarks import common\n")
    assert upward_imports("tools", "import sys\nsys.path.insert(0, '.')\n")
    assert upward_imports("tools", "from tools.train_azr import load_head\n")
    assert not upward_imports("evals", "from reasoning.azr import tasks\nimport torch\n")


def test_imports_run_one_way():
    bad = []
    for path in sources():
        top = path.relative_to(ROOT).parts[0]
        bad += [f"{path.relative_to(ROOT)} {b}" for b in upward_imports(top, path.read_text())]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def function_lengths(tree: ast.AST) -> list[tuple[str, int]]:
    nodes = (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))
    return [(n.name, n.end_lineno - n.lineno + 1) for n in nodes]


def test_files_and_functions_are_small():
    bad = []
    for path in sources():
        rel, text = path.relative_to(ROOT), path.read_text()
        if len(text.splitlines()) > MAX_FILE:
            bad.append(f"{rel}: {len(text.splitlines())} lines > {MAX_FILE}")
        for name, n in function_lengths(ast.parse(text)):
            if n > MAX_FUNCTION:
                bad.append(f"{rel}: {name} is {n} lines > {MAX_FUNCTION}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("tool", TOOLS)
def test_tool_main_reads_top_to_bottom(tool):
    tree = ast.parse((ROOT / "tools" / f"{tool}.py").read_text())
    lengths = dict(function_lengths(tree))
    assert lengths["main"] < MAX_MAIN, f"{tool}.main is {lengths['main']} lines"
