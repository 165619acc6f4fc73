"""Sample grids: images with their prompts written underneath, saved as one PNG."""

from __future__ import annotations

import textwrap
from pathlib import Path

import torch
from PIL import Image, ImageDraw


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [-1, 1] -> PIL RGB images."""
    arr = ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1)
    return [Image.fromarray(a) for a in arr.cpu().numpy()]


def save_grid(
    images: list[Image.Image], captions: list[str], path: str | Path, cell: int = 128, cols: int = 8
) -> Path:
    """Write a grid of `cell`-px tiles (nearest-neighbour upscaled) with wrapped captions."""
    rows = (len(images) + cols - 1) // cols
    text_h = 40
    sheet = Image.new("RGB", (cols * cell, rows * (cell + text_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (im, cap) in enumerate(zip(images, captions)):
        x, y = (i % cols) * cell, (i // cols) * (cell + text_h)
        sheet.paste(im.resize((cell, cell), Image.NEAREST), (x, y))
        lines = textwrap.wrap(cap, width=max(8, cell // 6))[:3]
        draw.multiline_text((x + 2, y + cell + 1), "\n".join(lines), fill=(0, 0, 0), spacing=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
