"""Benchmarks of the project's moving parts, one subcommand each (registered in `MODES`).

    python tools/bench.py executor [--n 2000] [--workers 2] [--out FILE.json]
    python tools/bench.py gen-train --config bench_gen_cpu --baseline --ablate [--sweep batch=2,4]
    python tools/bench.py gen-cache --config bench_gen_cpu --images 64   # data.cache vs none
    python tools/bench.py sample --config bench_gen_cpu --baseline --batch 4 --steps 10
    python tools/bench.py rollout --batches 4,16 --max-new-tokens 32
    python tools/bench.py grpo-vs-trl --prompts 8 --group 4 --max-new-tokens 32   # needs trl (dev)
    python tools/bench.py memory --config gen_sana_qwen25vl --backbone-like qwen2.5-vl-3b \
        --decoder-like sana-600m --check   # per-GPU memory, meta device; a fixture check

prints a JSON report, then a short table. A new mode adds `add_<mode>_args(parser)` and
`bench_<mode>(args) -> dict` and one line in `MODES`; the larger modes live in
`benchmarks/` (`add_args`, `run`, `table`). Ratios between variants are measured in the
same process, interleaved; see `benchmarks/common.py` (and `benchmarks/report.py` for tables).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

TINY = "def f(x):\n    return x + 1"
BASELINE = "{code}\nprint(repr(f({inputs})))"


def add_executor_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=2000, help="tiny programs to run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline-n", type=int, default=200, help="programs for the baseline")


def _baseline(code: str, inputs: str, flags: list[str]) -> bool:
    argv = [sys.executable, *flags, "-c", BASELINE.format(code=code, inputs=inputs)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=5, env={})
    return out.returncode == 0


def _tree_cpu_s(pids: list[int]) -> float:
    """CPU seconds used so far by processes `pids` and their descendants (Linux /proc)."""
    total, todo = 0, list(pids)
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
            for task in os.listdir(f"/proc/{pid}/task"):
                todo += map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split())
        except (OSError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def _cpu_s() -> float:
    usage = os.times()
    return usage.user + usage.system


def bench_executor(args: argparse.Namespace) -> dict[str, Any]:
    """Throughput of `run_many` / `validate_many` on tiny programs vs subprocess-per-program."""
    from reasoning.executor import Executor

    jobs = [(TINY, str(i)) for i in range(args.n)]
    with Executor(workers=args.workers, timeout=1.0, static_checks=True) as ex:
        ex.run_many(jobs[: 4 * args.workers])  # warm up
        pids = [w.proc.pid for w in ex._pool.live_workers()]
        cpu0, host0, started = _tree_cpu_s(pids), _cpu_s(), time.perf_counter()
        runs = ex.run_many(jobs)
        run_s = time.perf_counter() - started
        cpu1, host1 = _tree_cpu_s(pids), _cpu_s()
        n_val = max(1, args.n // 2)
        started = time.perf_counter()
        validated = ex.validate_many(jobs[:n_val])
        validate_s = time.perf_counter() - started
        protections, python = ex.protections, ex.python
    ok = sum(r.ok and r.output == str(int(i) + 1) for r, (_, i) in zip(runs, jobs))
    ok_val = sum(r.ok for r in validated)
    baselines = {}
    n_base = min(args.baseline_n, args.n)
    with ThreadPoolExecutor(args.workers) as pool:
        for name, flags in (("python -c", []), ("python -I -S -c", ["-I", "-S"])):
            started = time.perf_counter()
            good = sum(pool.map(lambda job, f=flags: _baseline(*job, f), jobs[:n_base]))
            baselines[name] = {"programs": n_base, "ok": good,
                               "per_s": n_base / (time.perf_counter() - started)}  # fmt: skip
    programs_per_s, validated_per_s = args.n / run_s, n_val / validate_s
    return {
        "mode": "executor",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "workers": args.workers,
        "sandbox_python": python,
        "protections": protections,
        "programs": args.n,
        "programs_ok": ok,
        "programs_per_s": programs_per_s,
        # CPU per program (trainer side + sandbox side): throughput an idle machine allows
        "cpu_ms_per_program": 1e3 * (cpu1 - cpu0 + host1 - host0) / args.n,
        "load_average_1m": os.getloadavg()[0],
        "validated": n_val,
        "validated_ok": ok_val,
        "validated_per_s": validated_per_s,
        "baseline": baselines,
        "speedup_vs_python_c": programs_per_s / baselines["python -c"]["per_s"],
        "speedup_vs_python_isolated": programs_per_s / baselines["python -I -S -c"]["per_s"],
        "targets_met": min(programs_per_s / 500, validated_per_s / 250) >= 1
        and all(protections.values()),
    }


def table_executor(report: dict[str, Any]) -> str:
    rows = [
        ("executor run_many", f"{report['programs_per_s']:.0f} programs/s"),
        ("executor validate_many", f"{report['validated_per_s']:.0f} tasks/s"),
        ("cpu per program", f"{report['cpu_ms_per_program']:.2f} ms"),
        ("load average, 1 min", f"{report['load_average_1m']:.1f}"),
        *((f"baseline {k}", f"{v['per_s']:.0f} programs/s") for k, v in report["baseline"].items()),
        ("speedup vs python -c", f"{report['speedup_vs_python_c']:.1f}x"),
        ("all protections on", str(all(report["protections"].values()))),
        ("targets (500 / 250 per s) met", str(report["targets_met"])),
    ]
    return "\n".join(f"{name:<32}{value}" for name, value in rows)


Mode = tuple[
    Callable[[argparse.ArgumentParser], None],
    Callable[[argparse.Namespace], dict[str, Any]],
    Callable[[dict[str, Any]], str],
]


def _mode(module: str) -> Mode:
    """A mode that lives in `benchmarks.<module>` (imported only when it runs)."""
    import importlib

    def load():
        return importlib.import_module(f"benchmarks.{module}")

    return (
        lambda parser: load().add_args(parser),
        lambda args: load().run(args),
        lambda report: load().table(report),
    )


MODES: dict[str, Mode] = {
    "executor": (add_executor_args, bench_executor, table_executor),
    "gen-train": _mode("gen_train"),
    "gen-cache": _mode("gen_cache"),
    "sample": _mode("sample"),
    "rollout": _mode("rollout"),
    "grpo-vs-trl": _mode("grpo_trl"),
    "memory": _mode("memory"),
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    for name, (add_args, _, _) in MODES.items():
        mode_parser = sub.add_parser(name)
        add_args(mode_parser)
        mode_parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    _, bench, table = MODES[args.mode]
    report = bench(args)
    text = json.dumps(report, indent=2)
    print(text)
    print(table(report))
    if args.out:
        args.out.write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
