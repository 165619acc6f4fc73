"""Frozen external image encoders as REPA alignment targets (DINOv2, SigLIP, CLIP).

REPA (Yu et al. 2024) aligns a decoder block's hidden states to the patch features of a frozen
self-supervised encoder, DINOv2 in its main setting. This is one thin adapter over two
libraries, with nothing vendored:

- ``timm``: ``timm.create_model(name, **model_kwargs)``, weights from the local file through
  timm's own loader (``pretrained_cfg_overlay=dict(file=...)``), so timm's checkpoint filters
  apply (original DINOv2 ``.pth`` files convert, position tables resample to ``img_size``);
- ``open_clip``: ``open_clip.create_model(name, pretrained=<local file>)``, or a folder with
  ``open_clip_config.json`` through its ``local-dir:`` schema; only the image tower is kept.

``path`` is a weights file (``.safetensors``, ``.pth``, ``.pt``, ``.bin``) or a folder holding
one; nothing is downloaded (a name is never resolved as a hub tag). ``ImageEncoder`` maps images
in the generator's pixel range [-1, 1] to the last block's normalised patch tokens (B, N, D),
resized to the encoder's input size and normalised with its own mean / std.

Left out on purpose: intermediate-layer targets, several encoders at once (REPA's ablation),
and any fine-tuning of the encoder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("timm", "open_clip")
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


@dataclass
class EncoderConfig:
    kind: str = "timm"  # timm | open_clip
    name: str = ""  # timm: e.g. vit_base_patch14_dinov2; open_clip: e.g. ViT-B-16-SigLIP
    path: str = ""  # local weights file, or a folder holding one
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # constructor overrides,
    # e.g. {img_size = 224} (REPA feeds DINOv2 224 px: a 16 x 16 grid)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"encoder.kind: unknown '{self.kind}' (timm | open_clip)")


class EncoderError(ValueError):
    """An encoder that cannot be loaded; the message names the path and what is missing."""


def find_weights(path: str | Path) -> Path:
    """The weights file at `path`: the file itself, or the one weights file in a folder."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if not p.is_dir():
        raise EncoderError(
            f"encoder.path: no such file or folder {p} (expected local weights: "
            f"{', '.join(WEIGHT_SUFFIXES)}; nothing is downloaded)"
        )
    files = sorted(f for f in p.iterdir() if f.suffix in WEIGHT_SUFFIXES)
    preferred = [f for f in files if f.stem in ("model", "open_clip_model", "pytorch_model")]
    files = preferred or files
    if len(files) != 1:
        found = ", ".join(f.name for f in files) or "none"
        raise EncoderError(f"encoder.path: need one weights file in {p}, found {found}")
    return files[0]


def _timm_model(cfg: EncoderConfig) -> tuple[nn.Module, dict[str, Any]]:
    import timm

    weights = find_weights(cfg.path)
    name = cfg.name
    config = weights.parent / "config.json"  # a Hugging Face timm folder names its model
    if not name and config.is_file():
        name = json.loads(config.read_text()).get("architecture", "")
    if not name:
        raise EncoderError(f"encoder.name: required for timm weights {weights}")
    overlay = dict(file=str(weights.resolve()), url=None, hf_hub_id=None, source=None)
    kwargs = {"num_classes": 0} | cfg.model_kwargs
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    data = timm.data.resolve_model_data_config(model)
    size = getattr(getattr(model, "patch_embed", None), "img_size", None) or data["input_size"][1:]
    return model, dict(size=size, mean=data["mean"], std=data["std"])


def _open_clip_model(cfg: EncoderConfig) -> tuple[nn.Module, dict[str, Any]]:
    import open_clip

    weights = find_weights(cfg.path)
    local = weights.parent / "open_clip_config.json"
    if Path(cfg.path).is_dir() and local.is_file():
        name, pretrained = f"local-dir:{weights.parent.resolve()}", None
    elif cfg.name:
        name, pretrained = cfg.name, str(weights.resolve())  # a path, never a hub tag
    else:
        raise EncoderError(f"encoder.name: required for open_clip weights {weights}")
    model = open_clip.create_model(
        name, pretrained=pretrained, pretrained_image=False, pretrained_text=False,
        **cfg.model_kwargs,
    )  # fmt: skip
    pre = open_clip.get_model_preprocess_cfg(model)
    return model.visual, dict(size=pre["size"], mean=pre["mean"], std=pre["std"])


class ImageEncoder(nn.Module):
    """A frozen timm / open_clip image tower: pixels (B, 3, H, W) in [-1, 1] -> (B, N, D)."""

    def __init__(self, model: nn.Module, size: Any, mean: Any, std: Any, kind: str = "timm"):
        super().__init__()
        self.model = model.requires_grad_(False).eval()
        self.kind = kind
        self.size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        with torch.no_grad():
            probe = self.features(torch.zeros(1, 3, *self.size))  # (1, N, D)
        self.dim: int = probe.shape[-1]
        self.num_tokens: int = probe.shape[1]

    def train(self, mode: bool = True) -> ImageEncoder:
        return super().train(False)  # frozen: never in training mode (no dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised inputs at the encoder's size (B, 3, S, S) -> last-block patch tokens."""
        if self.kind == "timm":
            out = self.model.forward_intermediates(
                x, indices=1, norm=True, output_fmt="NLC", intermediates_only=True
            )
        else:
            out = self.model.forward_intermediates(
                x, indices=1, normalize_intermediates=True, output_fmt="NLC",
                intermediates_only=True,
            )["image_intermediates"]  # fmt: skip
        return out[-1]  # (B, N, D), prefix (class / register) tokens dropped

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> frozen patch features (B, N, D)."""
        x = (pixels.float() + 1) / 2  # (B, 3, H, W) in [0, 1]
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(
                x, size=self.size, mode="bicubic", align_corners=False, antialias=True
            )
        x = (x - self.mean) / self.std  # (B, 3, S, S)
        return self.features(x)  # (B, N, D)


def build_encoder(cfg: EncoderConfig) -> ImageEncoder:
    """Load the configured encoder from its local weights, frozen."""
    if not cfg.path:
        raise EncoderError("encoder.path: required (a local weights file or folder)")
    loader = _timm_model if cfg.kind == "timm" else _open_clip_model
    model, pre = loader(cfg)
    return ImageEncoder(model, pre["size"], pre["mean"], pre["std"], cfg.kind)
