"""Text-to-image training data for `tools/train_gen.py`, indexable by global sample index.

`shapes`: training-split prompts of GenEval's categories (unimodal/data/split.py) with a scene
that satisfies each, rendered on the fly (a pure function of (seed, index), so resumed runs see exactly the samples they would have).
`folder`: images + metadata.jsonl (Hugging Face imagefolder convention), e.g. emoji.
`webdataset` / `hf`: local tar shards or parquet / arrow files streamed shard by shard, each
process reading its own shards, resumable at the exact position (unimodal/data/stream.py).
Images keep their aspect ratio: `resize = "center_crop"` fills and crops, `"pad"` letterboxes.

Left out on purpose: bucketing by aspect ratio; every image is square.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from unimodal.data import (
    TRAIN_CATEGORIES,
    edit_sample,
    render,
    sample_train_prompt,
    to_pixels,
)
from unimodal.data.folder import load_rgb
from unimodal.data.stream import RESIZE_MODES, fit_image, process_layout

BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0)}
KINDS = ("shapes", "folder", "webdataset", "hf")


@dataclass
class GenDataConfig:
    kind: str = "shapes"  # shapes | folder | webdataset | hf
    # folder: a directory with metadata.jsonl; webdataset: a glob of .tar shards (or their
    # directory); hf: a glob of local .parquet / .arrow files (or their directory)
    root: str = ""
    categories: tuple[str, ...] = ()  # shapes: GenEval categories to train on; empty = all
    # the training ones (unimodal/data/split.py: single_object is held out whole)
    background: str = "white"  # images: colour behind transparent pixels / padding (white | black)
    edit_fraction: float = 0.0  # shapes: share of samples that are edit pairs (editing runs)
    resize: str = "center_crop"  # images: center_crop (fill, crop) | pad (fit, letterbox)
    text_field: str = "text"  # hf: caption column; webdataset: caption field of {key}.json
    image_field: str = "image"  # hf: image column (HF Image struct or raw bytes)
    cache: str = ""  # a directory written by tools/cache.py for this data: VAE latents and the
    # prompt's keys / values are read from it instead of computed (unimodal/gencache.py)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"data.kind: unknown '{self.kind}' ({' | '.join(KINDS)})")
        if self.kind != "shapes" and not self.root:
            raise ValueError(f"data.root: required for data.kind = '{self.kind}' (a local path)")
        if self.cache and self.kind == "shapes":
            raise ValueError("data.cache: the shapes world is procedural; caches need fixed data")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"data.resize: unknown '{self.resize}' ({' | '.join(RESIZE_MODES)})")
        if not 0 <= self.edit_fraction <= 1:
            raise ValueError(f"data.edit_fraction: must be in [0, 1], got {self.edit_fraction}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"data.background: unknown '{self.background}' (white | black)")
        for c in self.categories:
            if c not in TRAIN_CATEGORIES:
                raise ValueError(
                    f"data.categories: '{c}' is not a training category; choose from "
                    f"{list(TRAIN_CATEGORIES)} (unimodal/data/split.py)"
                )


@dataclass
class GenSample:
    """A prompt (or edit instruction), its target image, and the edit's source image if any."""

    text: str
    pixels: torch.Tensor  # (3, H, W) in [-1, 1]
    source: Image.Image | None = None


class GenData:
    """Training samples by global index for the configured source. Streams (`webdataset`,
    `hf`) serve only this process's indices; under several processes they need `per_process`,
    the examples each process takes per micro-step (`run.per_process`)."""

    def __init__(self, cfg: GenDataConfig, size: int, seed: int, per_process: int | None = None):
        self.cfg, self.size, self.seed = cfg, size, seed
        self.categories = cfg.categories or TRAIN_CATEGORIES
        self.folder = self.stream = None
        background = BACKGROUNDS[cfg.background]
        if cfg.kind == "folder":
            from unimodal.data import FolderImageDataset

            self.folder = FolderImageDataset(cfg.root, size, background=background)
        elif cfg.kind in ("webdataset", "hf"):
            from unimodal.data.shards import open_stream

            layout = process_layout(per_process)
            fields = {"text_field": cfg.text_field, "image_field": cfg.image_field}
            self.stream = open_stream(
                cfg.kind, cfg.root, size, seed, layout, cfg.resize, background, **fields
            )

    def __getitem__(self, index: int) -> GenSample:
        if self.stream is not None:
            image, text = self.stream[index]
            return GenSample(text, to_pixels(image))
        if self.folder is not None:
            path, text = self.folder.entries[index % len(self.folder)]
            image = load_rgb(path, self.folder.background)
            image = fit_image(image, self.size, self.cfg.resize, self.folder.background)
            return GenSample(text, to_pixels(image))
        rng = np.random.default_rng([self.seed, index, 11])
        if rng.random() < self.cfg.edit_fraction:
            pair = edit_sample(self.seed, index)
            source = render(pair.source, self.size)
            return GenSample(pair.instruction, to_pixels(render(pair.target, self.size)), source)
        category = self.categories[int(rng.integers(len(self.categories)))]
        text, _, scene = sample_train_prompt(rng, category)
        return GenSample(text, to_pixels(render(scene, self.size)))

    def batch(self, gen, samples: list[GenSample]) -> tuple:
        """(prompt, pixels, ref, latents None) for `Generator.forward` (see `batch_inputs`)."""
        return (*batch_inputs(gen, samples), None)


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
