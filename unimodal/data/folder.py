"""Captioned image folders in the Hugging Face imagefolder convention.

``root/metadata.jsonl`` holds one JSON object per line with ``file_name`` (a path relative to
``root``) and ``text``. Metadata is validated eagerly (cheap: parse and stat), images are
decoded lazily. Every problem raises ``DataError`` with a one-line message naming the file.
Left out: metadata.csv, split sub-folders, labels from folder names, non-text columns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

METADATA = "metadata.jsonl"


def to_pixels(image: Image.Image) -> torch.Tensor:
    """PIL RGB image -> float tensor (3, H, W) in [-1, 1] (the package's pixel convention)."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0  # (H, W, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


class DataError(ValueError):
    """A data folder is missing, malformed, or holds an unreadable image."""


def read_metadata(root: Path, text_field: str = "text") -> list[tuple[Path, str]]:
    """Validated (image path, text) pairs from ``root/metadata.jsonl``."""
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist or is not a directory")
    meta = root / METADATA
    if not meta.is_file():
        raise DataError(f"missing {meta} (expected one JSON object per line with file_name, text)")
    entries = []
    base = root.resolve()
    with meta.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{meta}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            for key in ("file_name", text_field):
                if key not in row:
                    raise DataError(f"{where}: missing field {key!r}")
                if not isinstance(row[key], str):
                    raise DataError(f"{where}: field {key!r} must be a string")
            path = (root / row["file_name"]).resolve()
            if not path.is_relative_to(base):
                raise DataError(f"{where}: file_name {row['file_name']!r} points outside {root}")
            if not path.is_file():
                raise DataError(f"{where}: image {path} does not exist")
            entries.append((path, row[text_field]))
    if not entries:
        raise DataError(f"{meta} lists no images")
    return entries


def load_rgb(path: Path, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Decode ``path`` to RGB, compositing any transparency onto ``background``."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                rgba = im.convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, (*background, 255))
                return Image.alpha_composite(canvas, rgba).convert("RGB")
            return im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image {path}: {e}") from None


def resize_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (bicubic) and centre-crop to ``size x size``."""
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


class FolderImageDataset(Dataset):
    """Captioned images from ``root``: dict(pixels (3, size, size) in [-1, 1], text)."""

    def __init__(
        self,
        root: str | Path,
        size: int,
        background: tuple[int, int, int] = (255, 255, 255),
        text_field: str = "text",
    ) -> None:
        self.root = Path(root)
        self.size = size
        self.background = tuple(background)
        self.entries = read_metadata(self.root, text_field)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, text = self.entries[index]
        image = resize_crop(load_rgb(path, self.background), self.size)
        return {"pixels": to_pixels(image), "text": text}
