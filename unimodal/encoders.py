"""Frozen external image encoders as REPA alignment targets (DINOv2, SigLIP, CLIP).

REPA (Yu et al. 2024) aligns a decoder block's hidden states to the patch features of a frozen
self-supervised encoder, DINOv2 in its main setting. This is one thin adapter over two
libraries, with nothing vendored:

- ``timm``: a Hugging Face timm folder (``config.json``: ``architecture``, ``pretrained_cfg``,
  ``model_args``) through timm's ``local-dir:`` schema; otherwise ``timm.create_model(name,
  **model_kwargs)`` with the weights file through timm's own loader
  (``pretrained_cfg_overlay=dict(file=...)``). Either way timm's checkpoint filters apply
  (original DINOv2 ``.pth`` files convert, position tables resample to ``img_size``);
- ``open_clip``: a folder with ``open_clip_config.json`` through its ``local-dir:`` schema, or
  ``open_clip.create_model(name, pretrained=<local file>)``; only the image tower is kept.

``path`` is a weights file (``.safetensors``, ``.pth``, ``.pt``, ``.bin``) or a folder holding
one checkpoint (in one or several of those formats, as hub folders have it); nothing is
downloaded (a name is never resolved as a hub tag). ``model_kwargs`` override the folder's. ``ImageEncoder`` maps images
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
    if len({f.stem for f in files}) != 1:  # one checkpoint, maybe saved in several formats
        found = ", ".join(f.name for f in files) or "none"
        raise EncoderError(f"encoder.path: need one weights file in {p}, found {found}")
    return min(files, key=lambda f: WEIGHT_SUFFIXES.index(f.suffix))  # safetensors first


def hub_folder(path: str, config: str) -> Path | None:
    """`path` as a library's hub folder (holding `config` and weights), or None if it is not
    one; a folder with the config but no weights is an error naming it."""
    p = Path(path).expanduser()
    if not (p / config).is_file():
        return None
    if not any(f.suffix in WEIGHT_SUFFIXES for f in p.iterdir()):
        raise EncoderError(
            f"encoder.path: {p} has {config} but no weights ({', '.join(WEIGHT_SUFFIXES)})"
        )
    return p.resolve()


def _check_timm_folder(cfg: EncoderConfig, folder: Path) -> None:
    """A timm folder's config.json names an architecture, the one `encoder.name` names."""
    arch = json.loads((folder / "config.json").read_text()).get("architecture")
    if not arch:
        raise EncoderError(f"encoder.path: {folder}/config.json names no timm 'architecture'")
    if cfg.name and cfg.name.split(".")[0] != arch:
        raise EncoderError(f"encoder.name: '{cfg.name}', but {folder}/config.json holds a {arch}")


def _timm_model(cfg: EncoderConfig) -> tuple[nn.Module, dict[str, Any]]:
    import timm

    kwargs = {"num_classes": 0} | cfg.model_kwargs
    folder = hub_folder(cfg.path, "config.json")
    if folder is not None:  # a Hugging Face timm folder: timm reads its config and weights
        _check_timm_folder(cfg, folder)
        model = timm.create_model(f"local-dir:{folder}", pretrained=True, **kwargs)
    else:
        weights = find_weights(cfg.path)
        if not cfg.name:
            raise EncoderError(f"encoder.name: required for timm weights {weights}")
        overlay = dict(file=str(weights.resolve()), url=None, hf_hub_id=None, source=None)
        model = timm.create_model(
            cfg.name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs
        )
    data = timm.data.resolve_model_data_config(model)
    size = getattr(getattr(model, "patch_embed", None), "img_size", None) or data["input_size"][1:]
    return model, dict(size=size, mean=data["mean"], std=data["std"])


def _open_clip_model(cfg: EncoderConfig) -> tuple[nn.Module, dict[str, Any]]:
    import open_clip

    folder = hub_folder(cfg.path, "open_clip_config.json")
    if folder is not None:  # open_clip picks the folder's weights (open_clip_model.* first)
        name, pretrained = f"local-dir:{folder}", None
    else:
        weights = find_weights(cfg.path)
        if not cfg.name:
            raise EncoderError(f"encoder.name: required for open_clip weights {weights}")
        name, pretrained = cfg.name, str(weights.resolve())  # a path, never a hub tag
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
