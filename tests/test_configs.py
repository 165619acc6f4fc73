"""The runs in `configs/`: each names its tool on its first line and resolves with that tool's root
config; no GPU run carries a CPU-only setting it does not name (DESIGN.md: "no CPU-only crutch
reaches a GPU run unseen"); a tool given no `--config` runs its embedded default TOML.

Left out on purpose: training on any of these configs (the tools' own smoke tests do that).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from unimodal.config import load_config, to_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
TOMLS = sorted(
    p for p in CONFIGS.rglob("*.toml") if "accelerate" not in p.relative_to(CONFIGS).parts
)
ROOTS = {  # tool -> (module, root config class)
    "train_gen": ("unimodal.train.gen_config", "GenTrainConfig"),
    "train_mllm": ("unimodal.train.mllm_config", "MLLMConfig"),
    "train_azr": ("reasoning.azr.train_config", "AZRTrainConfig"),
    "train_rm": ("reasoning.rm_r1.train_config", "RMConfig"),
    "train_gen_rl": ("unimodal.gen_rl.config", "GenRLConfig"),
}
MISSING = object()


class CpuOnly(NamedTuple):
    """A setting that only makes sense for the CPU smoke runs."""

    key: str  # dotted key in the resolved config
    is_cpu: Callable[[Any], bool]  # the resolved value is the CPU-only one
    unless: tuple[str, ...] = ()  # dotted keys any of whose non-empty value makes it moot


CPU_ONLY = (
    CpuOnly("model.preset", lambda v: v in ("tiny", "tiny_gen"), ("model.path", "model.stage0")),
    CpuOnly("gen.relative_queries", lambda v: v is True),
    CpuOnly("gen.queries.attention", lambda v: v == "prompt"),
    CpuOnly("gen.prompt_loss_weight", lambda v: v > 0),  # checked only while the field exists
)


def tool_of(path: Path) -> str:
    """The tool named by the `# tool: train_xxx` first line ('' without one)."""
    lines = path.read_text().splitlines()
    first = lines[0] if lines else ""
    return first.removeprefix("# tool:").strip() if first.startswith("# tool:") else ""


def root_class(tool: str) -> type:
    module, name = ROOTS[tool]
    return getattr(importlib.import_module(module), name)


def resolve(path: Path) -> Any:
    return load_config(root_class(tool_of(path)), ["--config", str(path)])


def lookup(table: dict[str, Any], dotted: str) -> Any:
    """`table["a"]["b"]` for "a.b", or MISSING."""
    node: Any = table
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def unnamed_cpu_settings(resolved: dict[str, Any], written: dict[str, Any]) -> list[str]:
    """The CPU-only settings `resolved` has that the TOML table `written` does not name."""
    bad = []
    for s in CPU_ONLY:
        value = lookup(resolved, s.key)
        moot = any(lookup(resolved, k) not in (MISSING, "") for k in s.unless)
        if value is MISSING or moot:
            continue
        if s.is_cpu(value) and lookup(written, s.key) is MISSING:
            bad.append(f"{s.key} = {value!r}")
    return bad


@pytest.mark.parametrize("path", TOMLS, ids=lambda p: p.stem)
def test_config_resolves_with_its_tools_root(path: Path):
    if tool_of(path) not in ROOTS:
        pytest.fail(f"{path.name}: first line must be '# tool: X', X one of {sorted(ROOTS)}")
    resolve(path)


@pytest.mark.parametrize("path", [p for p in TOMLS if "gpu" in p.name], ids=lambda p: p.stem)
def test_gpu_config_names_every_cpu_only_setting(path: Path):
    resolved = to_dict(resolve(path))
    bad = unnamed_cpu_settings(resolved, tomllib.loads(path.read_text()))
    assert not bad, f"{path.name} gets CPU-only settings it does not name: {bad}"


def test_cpu_only_check_and_neutral_defaults(tmp_path: Path):
    """The check catches an unnamed crutch, and the root defaults carry none of them."""
    resolved = {"model": {"path": "", "preset": "tiny_gen"}, "gen": {"relative_queries": True}}
    assert unnamed_cpu_settings(resolved, {}) == ["model.preset = 'tiny_gen'", "gen.relative_queries = True"]  # fmt: skip
    assert not unnamed_cpu_settings(resolved, {"model": {"preset": "x"}, "gen": resolved["gen"]})
    empty = tmp_path / "empty.toml"
    empty.write_text("# tool: train_gen\n")
    from unimodal.train.gen_config import GenTrainConfig

    cfg = load_config(GenTrainConfig, ["--config", str(empty)])
    assert cfg.gen.relative_queries is False and cfg.gen.queries.attention != "prompt"
    assert cfg.model.preset != "tiny_gen"


@pytest.mark.parametrize("tool", sorted(ROOTS))
def test_embedded_default_is_a_config_of_its_tool(tool: str):
    name = getattr(root_class(tool), "DEFAULT_CONFIG", None)
    if name is None:
        pytest.skip(f"{tool} has no embedded default")
    assert tool_of(CONFIGS / f"{name}.toml") == tool


def print_config(tool: str, *argv: str) -> dict[str, Any]:
    """The TOML `tools/<tool>.py ... --print-config` prints, parsed."""
    cmd = [sys.executable, f"tools/{tool}.py", *argv, "--print-config"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return tomllib.loads(out.stdout)


@pytest.mark.parametrize(
    "tool, argv, expected",
    [
        ("train_gen", (), {"train.out_dir": "runs/gen_tiny", "gen.relative_queries": True}),
        ("train_gen", ("--config", "gen_shapes_gpu"), {"gen.relative_queries": False}),
        ("train_mllm", (), {"train.out_dir": "runs/mllm_tiny"}),
    ],
)
def test_print_config(tool: str, argv: tuple[str, ...], expected: dict[str, Any]):
    printed = print_config(tool, *argv)
    assert {k: lookup(printed, k) for k in expected} == expected
