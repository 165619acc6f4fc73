"""Image <-> latent adapters: diffusers ``AutoencoderKL`` / ``AutoencoderDC`` and a pixel identity.

The latent normalisation ``latents = (z - shift_factor) * scaling_factor`` (and its inverse) lives in
exactly one place, ``DiffusersVAE.normalize`` / ``denormalize``; everything downstream (decoder,
loss, sampler) sees normalised latents only. Pixels are in [-1, 1].

- ``kl``: SD / SD3 / Flux style KL autoencoder (Rombach et al. 2022), posterior mean by default.
- ``dc``: Deep-Compression AE (Chen et al. 2024, used by SANA), deterministic, 32x compression.
- ``identity``: pixel space (factor 1) for tiny runs.

Left out: per-channel ``latents_mean`` / ``latents_std`` normalisation, tiling and slicing.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderDC, AutoencoderKL
from torch import nn

from flow_matching._loading import resolve_pretrained

VAE_CLASSES = {"kl": AutoencoderKL, "dc": AutoencoderDC}
MIN_FACTOR = {"identity": 1, "kl": 8, "dc": 32}  # every released KL VAE / DC-AE downsamples
# at least this much (DC-AE: f32, f64, f128)


@dataclass
class VAEConfig:
    """Which autoencoder: ``type`` 'identity' | 'kl' | 'dc'; ``path`` a local diffusers folder."""

    type: str = "identity"
    path: str | None = None  # model folder, or pipeline folder with vae/
    sample_posterior: bool = False  # kl only: encode draws z ~ q(z|x) instead of its mean

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.type not in ("identity", *VAE_CLASSES):
            raise ValueError(
                f"vae.type: unknown vae {self.type!r}; choose one of 'identity', 'kl', 'dc'"
            )
        if self.type != "identity" and not self.path:
            raise ValueError(
                f"vae.path: required for vae.type {self.type!r} (a local diffusers folder)"
            )


def downsample_factor(cfg: VAEConfig) -> int:
    """The VAE's spatial factor from its config.json alone (no weights are read): what
    ``build_vae(cfg).downsample`` will be; the smallest factor of its kind when the folder
    cannot be read (yet)."""
    if cfg.type == "identity" or not cfg.path:
        return MIN_FACTOR[cfg.type]
    for file in (Path(cfg.path) / "config.json", Path(cfg.path) / "vae" / "config.json"):
        if not file.is_file():
            continue
        c = json.loads(file.read_text())
        blocks = c.get("block_out_channels" if cfg.type == "kl" else "encoder_block_out_channels")
        if blocks:
            return 2 ** (len(blocks) - 1)
    return MIN_FACTOR[cfg.type]


class IdentityVAE(nn.Module):
    """Pixel space: ``encode`` and ``decode`` are the identity; ``downsample`` 1."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.latent_channels = channels
        self.downsample = 1
        self.fingerprint = f"identity:{channels}"

    def encode(
        self, pixels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return pixels  # (B, C, H, W)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents  # (B, C, H, W)


class DiffusersVAE(nn.Module):
    """Frozen ``AutoencoderKL`` / ``AutoencoderDC`` with the scaling / shift applied once."""

    def __init__(
        self,
        model: AutoencoderKL | AutoencoderDC,
        *,
        sample_posterior: bool = False,
        source: str = "",
    ) -> None:
        super().__init__()
        if not isinstance(model, tuple(VAE_CLASSES.values())):
            raise TypeError(f"unsupported vae model {type(model).__name__}")
        self.model = model.requires_grad_(False)
        c = model.config
        self.is_kl = isinstance(model, AutoencoderKL)
        self.scaling_factor = float(c.scaling_factor)
        self.shift_factor = float(getattr(c, "shift_factor", None) or 0.0)
        self.latent_channels: int = c.latent_channels
        if self.is_kl:
            self.downsample: int = 2 ** (len(c.block_out_channels) - 1)
        else:
            self.downsample = int(model.spatial_compression_ratio)
        self.sample_posterior = sample_posterior and self.is_kl
        kind = "kl" if self.is_kl else "dc"
        self.fingerprint = (
            f"{kind}:{source}:scale={self.scaling_factor}:shift={self.shift_factor}"
            f":sample={self.sample_posterior}"
        )

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """Raw autoencoder latent -> normalised latent: ``(z - shift) * scale``."""
        return (z - self.shift_factor) * self.scaling_factor

    def denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latent -> raw autoencoder latent: ``latents / scale + shift``."""
        return latents / self.scaling_factor + self.shift_factor

    def encode(
        self, pixels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [-1, 1] -> normalised latents (B, C, H/f, W/f)."""
        if self.is_kl:
            dist = self.model.encode(pixels).latent_dist
            z = dist.sample(generator) if self.sample_posterior else dist.mode()  # (B, C, h, w)
        else:
            z = self.model.encode(pixels).latent  # (B, C, h, w)
        return self.normalize(z.float())  # fp32 latents whatever the VAE's dtype

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, C, h, w) -> pixels (B, 3, h*f, w*f), roughly in [-1, 1]."""
        return self.model.decode(self.denormalize(latents)).sample.float()  # (B, 3, H, W)


VAE = IdentityVAE | DiffusersVAE


def build_vae(cfg: VAEConfig, weights: bool = True) -> VAE:
    """Identity, or a frozen autoencoder loaded from the local folder ``cfg.path``
    (``weights=False``: built from its config alone, e.g. on the meta device)."""
    cfg.validate()
    if cfg.type == "identity":
        return IdentityVAE()
    cls = VAE_CLASSES[cfg.type]
    folder, subfolder = resolve_pretrained(cfg.path, "vae", "vae.path", (cls.__name__,))
    kw = dict(subfolder=subfolder, local_files_only=True)
    if weights:
        model = cls.from_pretrained(folder, **kw)
    else:
        model = cls.from_config(cls.load_config(folder, **kw))
    return DiffusersVAE(model, sample_posterior=cfg.sample_posterior, source=cfg.path)
