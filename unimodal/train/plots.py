"""Training curves from OUT/metrics.jsonl as one PNG (matplotlib, headless)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


def read_metrics(path: Path) -> dict[int, dict[str, float]]:
    """Rows by step; a resumed run's repeated steps keep the newest row."""
    rows: dict[int, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            rows[int(r["step"])] = r
    return rows


def _matching(key: str, names: set[str]) -> list[str]:
    """`key` itself, or for a key ending in `*` every metric with that prefix (one panel)."""
    if key.endswith("*"):
        return sorted(n for n in names if n.startswith(key[:-1]))
    return [key] if key in names else []


def plot_metrics(path: Path, out: Path, keys: Sequence[str], title: str) -> Path | None:
    """One panel per key of `keys` found in the metrics (`fm_*`: one line per matching metric,
    e.g. per query scale); None when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(path)
    steps = sorted(rows)
    names = {k for r in rows.values() for k in r}
    panels = [(k, _matching(k, names)) for k in keys]
    panels = [(k, m) for k, m in panels if m]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, (key, metrics) in zip(axes[0], panels):
        for name in metrics:
            xs = [s for s in steps if name in rows[s]]
            ax.plot(xs, [rows[s][name] for s in xs], label=name)
        if len(metrics) > 1:
            ax.legend(fontsize=7)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
