"""Text-to-image training data for `tools/train_gen.py`, indexable by global sample index.

`shapes`: prompts of GenEval's six categories with a scene that satisfies each, rendered on the
fly (a pure function of (seed, index), so resumed runs see exactly the samples they would have).
`folder`: images + metadata.jsonl (Hugging Face imagefolder convention), e.g. emoji.

Left out on purpose: bucketing by aspect ratio; every image is square.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from unimodal.data import CATEGORIES, edit_sample, render, sample_prompt, to_pixels

BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0)}


@dataclass
class GenDataConfig:
    kind: str = "shapes"  # shapes | folder
    root: str = ""  # folder: a directory with metadata.jsonl
    categories: tuple[str, ...] = ()  # shapes: GenEval categories to train on; empty = all
    background: str = "white"  # folder: colour behind transparent pixels (white | black)
    edit_fraction: float = 0.0  # shapes: share of samples that are edit pairs (editing runs)

    def __post_init__(self) -> None:
        if self.kind not in ("shapes", "folder"):
            raise ValueError(f"data.kind: unknown '{self.kind}' (shapes | folder)")
        if self.kind == "folder" and not self.root:
            raise ValueError("data.root: required for data.kind = 'folder' (a local directory)")
        if not 0 <= self.edit_fraction <= 1:
            raise ValueError(f"data.edit_fraction: must be in [0, 1], got {self.edit_fraction}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"data.background: unknown '{self.background}' (white | black)")
        for c in self.categories:
            if c not in CATEGORIES:
                raise ValueError(f"data.categories: unknown '{c}'; choose from {list(CATEGORIES)}")


@dataclass
class GenSample:
    """A prompt (or edit instruction), its target image, and the edit's source image if any."""

    text: str
    pixels: torch.Tensor  # (3, H, W) in [-1, 1]
    source: Image.Image | None = None


class GenData:
    """Training samples by index for the configured source."""

    def __init__(self, cfg: GenDataConfig, size: int, seed: int):
        self.cfg, self.size, self.seed = cfg, size, seed
        self.categories = cfg.categories or CATEGORIES
        self.folder = None
        if cfg.kind == "folder":
            from unimodal.data import FolderImageDataset

            self.folder = FolderImageDataset(cfg.root, size, background=BACKGROUNDS[cfg.background])

    def __getitem__(self, index: int) -> GenSample:
        if self.folder is not None:
            item = self.folder[index % len(self.folder)]
            return GenSample(item["text"], item["pixels"])
        rng = np.random.default_rng([self.seed, index, 11])
        if rng.random() < self.cfg.edit_fraction:
            pair = edit_sample(self.seed, index)
            source = render(pair.source, self.size)
            return GenSample(pair.instruction, to_pixels(render(pair.target, self.size)), source)
        category = self.categories[int(rng.integers(len(self.categories)))]
        text, _, scene = sample_prompt(rng, category)
        return GenSample(text, to_pixels(render(scene, self.size)))


def batch_inputs(gen, samples: list[GenSample]):
    """Prompt (with source images in context for edits) and reference pixels (zeros if none)."""
    images = [[s.source] if s.source is not None else [] for s in samples]
    has_source = any(images)
    prompt = gen.encode_prompts([s.text for s in samples], images if has_source else None)
    pixels = torch.stack([s.pixels for s in samples])
    ref = None
    if has_source:
        ref = torch.stack(
            [
                to_pixels(s.source) if s.source is not None else torch.zeros_like(s.pixels)
                for s in samples
            ]
        )
    return prompt, pixels, ref
