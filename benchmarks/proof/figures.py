"""The proof's two pictures: `samples.png` (generated images of the learning run, held-out
GenEval-shapes prompts with the checker's verdict under each) and `curves.png` (the training
curves of every learning run, one panel each)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchmarks.proof.learning import JOBS, metrics

CATEGORIES = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
ROW_PX = 96 + 40  # one row of `unimodal.grid.save_grid(..., cell=96)`: tile + caption


def samples(geneval_dir: Path, out: Path, rows_per_category: int = 1) -> Path | None:
    """Stack the first row(s) of each category's grid (written by the GenEval-shapes suite)."""
    from PIL import Image, ImageDraw

    strips = []
    for cat in CATEGORIES:
        path = geneval_dir / f"{cat}.png"
        if path.is_file():
            with Image.open(path) as im:
                box = (0, 0, im.width, min(im.height, ROW_PX * rows_per_category))
                strips.append((cat, im.convert("RGB").crop(box)))
    if not strips:
        return None
    label = 18
    width = max(s.width for _, s in strips)
    sheet = Image.new("RGB", (width, sum(s.height + label for _, s in strips)), (255, 255, 255))
    draw, y = ImageDraw.Draw(sheet), 0
    for cat, strip in strips:
        draw.text((4, y + 3), cat.replace("_", " "), fill=(0, 0, 0))
        sheet.paste(strip, (0, y + label))
        y += strip.height + label
    sheet.save(out)
    return out


def curves(work: Path, out: Path, title: str) -> Path | None:
    """One panel per (learning run, curve) found in the runs' metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, Sequence[int], Sequence[float]]] = []
    for job in JOBS:
        rows = metrics(work / job.name)
        for key in job.curves:
            pts = [(r["step"], r[key]) for r in rows if key in r]
            if pts:
                panels.append((f"{job.name}: {key}", [p[0] for p in pts], [p[1] for p in pts]))
    if not panels:
        return None
    cols = min(4, len(panels))
    n_rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.6 * cols, 2.8 * n_rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (name, xs, ys) in zip(axes.flat, panels):
        ax.plot(xs, ys, marker="." if len(xs) < 30 else None)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
