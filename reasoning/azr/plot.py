"""Plot AZR self-play curves from `RUN/metrics.jsonl`: valid-proposal rate, solve rate,
learnability, buffer size, solver response length and format rate, and the share of rollouts
with a non-zero advantage per role, per task type over steps, one PNG (two rows).

    python -m reasoning.azr.plot runs/azr_tiny            # writes runs/azr_tiny/azr_curves.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from reasoning.azr.tasks import KINDS

PANELS = (
    ("valid-proposal rate", "{kind}/propose/valid_rate"),
    ("solver solve rate", "{kind}/solve/solve_rate"),
    ("proposer learnability", "{kind}/propose/learnability"),
    ("buffer size", "buffer/{kind}"),
    ("solver response length", "{kind}/solve/length"),
    ("solver format rate", "{kind}/solve/format_rate"),
    ("solver: non-zero advantage", "{kind}/solve/nonzero_adv"),
    ("proposer: non-zero advantage", "{kind}/propose/nonzero_adv"),
)
COLUMNS = 4


def read_metrics(path: str | Path) -> list[dict]:
    """Rows of a metrics JSONL (each with a `step`)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_metrics(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Save the panels (one line per task type) and return the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / "metrics.jsonl")
    rows_n = -(-len(PANELS) // COLUMNS)
    fig, axes = plt.subplots(rows_n, COLUMNS, figsize=(5 * COLUMNS, 3.5 * rows_n), squeeze=False)
    for ax, (title, suffix) in zip(axes.flat, PANELS):
        for kind in KINDS:
            key = suffix.format(kind=kind)
            pts = [(r["step"], r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=kind)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out) if out else run_dir / "azr_curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(plot_metrics(*sys.argv[1:3]))
