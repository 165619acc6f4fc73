"""Torch datasets over the shapes world, each sample a pure function of (seed, index).

Because sample ``i`` depends only on the seed and ``i``, a training run resumes its data
position exactly by restarting at the saved index. Pixels follow the package convention:
float tensors (3, H, W) in [-1, 1]. Use ``collate`` with a DataLoader (samples hold
dataclasses and strings that torch's default collate cannot batch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .captions import CATEGORIES, Spec, sample_prompt
from .edits import EDIT_KINDS, edit_sample
from .shapes import Scene, render
from .vqa import vqa_sample


def to_pixels(image: Image.Image) -> torch.Tensor:
    """PIL RGB image -> float tensor (3, H, W) in [-1, 1]."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0  # (H, W, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def prompt_sample(
    seed: int, index: int, categories: tuple[str, ...] = CATEGORIES
) -> tuple[str, Spec, Scene]:
    """The ``index``-th (text, spec, scene) of stream ``seed``; categories cycle for balance."""
    rng = np.random.default_rng([seed, index, 1])
    return sample_prompt(rng, categories[index % len(categories)])


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; keep everything else as lists."""
    out: dict[str, Any] = {}
    for key in batch[0]:
        vals = [b[key] for b in batch]
        out[key] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else vals
    return out


class ShapesDataset(Dataset):
    """Text-to-image samples: dict(pixels, text, spec, category)."""

    def __init__(
        self,
        size: int,
        seed: int = 0,
        categories: tuple[str, ...] = CATEGORIES,
        length: int = 100_000,
    ) -> None:
        unknown = set(categories) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown categories {sorted(unknown)}; expected {CATEGORIES}")
        self.size, self.seed, self.categories, self.length = size, seed, tuple(categories), length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        text, spec, scene = prompt_sample(self.seed, index, self.categories)
        pixels = to_pixels(render(scene, self.size))
        return {"pixels": pixels, "text": text, "spec": spec, "category": spec.category}


class VQADataset(Dataset):
    """Understanding samples: dict(pixels, question, answer, qtype)."""

    def __init__(self, size: int, seed: int = 0, length: int = 100_000) -> None:
        self.size, self.seed, self.length = size, seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene, qa = vqa_sample(self.seed, index)
        return {
            "pixels": to_pixels(render(scene, self.size)),
            "question": qa.question,
            "answer": qa.answer,
            "qtype": qa.qtype,
        }


class EditDataset(Dataset):
    """Editing samples: dict(source, target (pixels), instruction, kind, region (4,), scene)."""

    def __init__(
        self,
        size: int,
        seed: int = 0,
        kinds: tuple[str, ...] = EDIT_KINDS,
        length: int = 100_000,
    ) -> None:
        unknown = set(kinds) - set(EDIT_KINDS)
        if unknown:
            raise ValueError(f"unknown edit kinds {sorted(unknown)}; expected {EDIT_KINDS}")
        self.size, self.seed, self.kinds, self.length = size, seed, tuple(kinds), length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = edit_sample(self.seed, index, self.kinds)
        return {
            "source": to_pixels(render(pair.source, self.size)),
            "target": to_pixels(render(pair.target, self.size)),
            "instruction": pair.instruction,
            "kind": pair.kind,
            "region": torch.tensor(pair.region, dtype=torch.float32),
            "scene": pair.target,
        }
