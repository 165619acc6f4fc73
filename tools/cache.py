"""Write the precomputed cache of a fixed dataset for `tools/train_gen.py`, once.

    python tools/cache.py --config gen_emoji_shards_gpu --data.cache=data/emoji_cache
    python tools/train_gen.py --config gen_emoji_shards_gpu --data.cache=data/emoji_cache

Takes the training run's own config (the same `--config` and overrides; `data.cache` names the
output folder) and writes the VAE latents of every image at each scale's resolution and the
frozen backbone's prompt keys / values, one cache shard per data shard, with a fingerprint of
the backbone, VAE, resolutions, data and precision that a run checks before it trains (a
mismatch is a one-line error naming it). What is cached and why (the learnable queries' states
are not: they train): `unimodal/gencache.py`. Extra flags: `--batch N` records per pass (32),
`--per-shard N` folder entries per cache shard (1024), `--device auto|cpu|cuda`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from unimodal.backbone import Backbone
from unimodal.cli import run_tool
from unimodal.config import ConfigError
from unimodal.gencache_write import write_cache
from unimodal.generator import Generator
from unimodal.presets import ensure_backbone
from unimodal.train.chain import resolve_stage0
from unimodal.train.gen_config import GenTrainConfig


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """This tool's own flags, and the rest for the training config."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=False)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--per-shard", type=int, default=1024)
    p.add_argument("--device", default="auto")
    return p.parse_known_args(argv)


def main(cfg: GenTrainConfig, batch: int = 32, per_shard: int = 1024, device: str = "auto") -> dict:
    """Build the frozen parts of `cfg`'s generator and write the cache to `cfg.data.cache`."""
    if not cfg.data.cache:
        raise ConfigError("data.cache: name the folder to write (--data.cache=DIR)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolve_stage0(cfg.model)
    path = ensure_backbone(cfg.model.path, cfg.model.preset)
    dtype = None if cfg.model.dtype == "auto" else getattr(torch, cfg.model.dtype)
    gen = Generator(cfg.gen, Backbone.from_pretrained(path, dtype=dtype), pretrained_weights=False)
    index = write_cache(cfg, gen.to(device), Path(cfg.data.cache), batch, per_shard)
    mb = index["bytes"] / 2**20
    print(
        f"wrote {cfg.data.cache}: {index['records']} records ({index['bad']} bad), "
        f"{len(index['shards'])} shards, {mb:.1f} MiB in {index['seconds']:.1f} s",
        flush=True,
    )
    return index


if __name__ == "__main__":
    flags, rest = parse(sys.argv[1:])
    run_tool(
        lambda cfg: main(cfg, flags.batch, flags.per_shard, flags.device), GenTrainConfig, rest
    )
