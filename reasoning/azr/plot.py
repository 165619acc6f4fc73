"""Plot AZR self-play curves from `RUN/metrics.jsonl`: valid-proposal rate, solve rate,
learnability, buffer size and solver response length per task type over steps, one PNG.

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
)


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
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.5))
    for ax, (title, suffix) in zip(axes, PANELS):
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
