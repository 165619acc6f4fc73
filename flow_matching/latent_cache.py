"""Encode a fixed image dataset once and keep its normalised latents in one safetensors file.

Row ``i`` of the stored ``latents`` tensor (N, C, h, w) is item ``i`` of the dataset. The file
carries a fingerprint (VAE type, source, scaling, dataset length, image shape, caller's key); a
mismatch rebuilds the cache. Writes are atomic (temp file, fsync, rename).

Left out: augmentation (latents of a fixed view only), posterior sampling at read time (build the
cache with ``sample_posterior = False``), sharding for datasets larger than memory.
"""

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from flow_matching.vae import VAE


class LatentCache:
    """Normalised latents (N, C, h, w) of a fixed dataset, indexed like the dataset."""

    def __init__(self, latents: torch.Tensor, fingerprint: str) -> None:
        self.latents = latents  # (N, C, h, w)
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return self.latents.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.latents[index]  # (C, h, w)

    @staticmethod
    def make_fingerprint(vae: VAE, images: Sequence[torch.Tensor], dataset_key: str = "") -> str:
        shape = tuple(images[0].shape) if len(images) else ()
        return f"{vae.fingerprint}|n={len(images)}|shape={shape}|key={dataset_key}"

    @classmethod
    def build(
        cls,
        vae: VAE,
        images: Sequence[torch.Tensor],
        *,
        batch_size: int = 16,
        dataset_key: str = "",
    ) -> "LatentCache":
        """Encode ``images`` (items (3, H, W) in [-1, 1], all one size) in batches, without grad."""
        if len(images) == 0:
            raise ValueError("latent cache: the dataset is empty")
        param = next(vae.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        chunks = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                stop = min(start + batch_size, len(images))
                pixels = torch.stack([images[i] for i in range(start, stop)])  # (b, 3, H, W)
                z = vae.encode(pixels.to(device=device, dtype=dtype))  # (b, C, h, w)
                chunks.append(z.float().cpu())
        latents = torch.cat(chunks)  # (N, C, h, w)
        return cls(latents, cls.make_fingerprint(vae, images, dataset_key))

    def save(self, path: str | Path) -> None:
        """Write atomically: temp file, fsync, rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file(
            {"latents": self.latents.contiguous()}, str(tmp), {"fingerprint": self.fingerprint}
        )
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> "LatentCache":
        with safe_open(str(path), framework="pt") as f:
            fingerprint = (f.metadata() or {}).get("fingerprint", "")
            latents = f.get_tensor("latents")  # (N, C, h, w)
        return cls(latents, fingerprint)

    @classmethod
    def load_or_build(
        cls,
        path: str | Path,
        vae: VAE,
        images: Sequence[torch.Tensor],
        *,
        batch_size: int = 16,
        dataset_key: str = "",
    ) -> "LatentCache":
        """Reuse the file at ``path`` when its fingerprint matches, else encode and save."""
        expected = cls.make_fingerprint(vae, images, dataset_key)
        if Path(path).is_file():
            cache = cls.load(path)
            if cache.fingerprint == expected:
                return cache
        cache = cls.build(vae, images, batch_size=batch_size, dataset_key=dataset_key)
        cache.save(path)
        return cache
