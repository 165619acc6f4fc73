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


def plot_metrics(path: Path, out: Path, keys: Sequence[str], title: str) -> Path | None:
    """One panel per key of `keys` found in the metrics; None when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(path)
    steps = sorted(rows)
    keys = [k for k in keys if any(k in rows[s] for s in steps)]
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        xs = [s for s in steps if key in rows[s]]
        ax.plot(xs, [rows[s][key] for s in xs])
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
