"""How benchmark results are shown: `--sweep` parsing and running, sweep plots, text tables.

The measuring side (timing, ratios, FLOPs, memory) is in `benchmarks/common.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def parse_sweep(text: str | None, allowed: Sequence[str]) -> tuple[str, list[int]] | None:
    """`"batch=8,16,32"` -> ("batch", [8, 16, 32]); the key must be one of `allowed`."""
    if not text:
        return None
    key, eq, values = text.partition("=")
    if not eq or key not in allowed:
        raise SystemExit(f"--sweep: expected KEY=V1,V2,... with KEY one of {list(allowed)}")
    try:
        return key, [int(v) for v in values.split(",") if v]
    except ValueError:
        raise SystemExit(f"--sweep: values must be integers, got '{values}'") from None


def run_sweep(
    report: dict[str, Any],
    mode: str,
    sweep: tuple[str, list[int]],
    measure: Callable[[int], dict[str, Any]],
    plot: Path | None,
    metric: str = "images_per_s",
    ylabel: str = "images / s",
) -> None:
    """Measure every swept value, plot `metric` per variant, record it all in `report`."""
    key, values = sweep
    points, series = [], {}
    for v in values:
        res = measure(v)
        points.append({"value": v, **res})
        for name, r in res["variants"].items():
            series.setdefault(name, []).append(r[metric])
    plot = plot or Path("runs/bench") / f"{mode}_{key}.png"
    plot_sweep(key, values, series, ylabel, plot)
    report["sweep"] = {"key": key, "values": values, "points": points, "plot": str(plot)}


def sweep_line(report: dict[str, Any]) -> str:
    """The table's note on where the sweep plot is ('' without a sweep)."""
    if "sweep" not in report:
        return ""
    return f"\nsweep {report['sweep']['key']}: plot in {report['sweep']['plot']}"


def plot_sweep(
    key: str, values: Sequence[int], series: dict[str, Sequence[float]], ylabel: str, path: Path
) -> Path:
    """Line plot of each series against the swept values, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for name, ys in series.items():
        ax.plot(list(values), list(ys), marker="o", label=name)
    ax.set_xlabel(key)
    ax.set_ylabel(ylabel)
    if min(values) > 0:
        ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def speedup(ratio: dict[str, float] | None) -> str:
    """`1.23x (median 1.20x)` for a `paired_ratio`, empty for none."""
    return f"{ratio['best']:.2f}x (median {ratio['median']:.2f}x)" if ratio else ""


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width text table."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)
