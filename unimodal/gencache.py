"""Precomputed caches for `tools/train_gen.py` on a fixed dataset: what the frozen parts compute.

Per record, written once by `tools/cache.py` (`unimodal.gencache_write`) and read back by a run
with `data.cache = DIR` instead of being recomputed every step:

- the VAE latents of the image at every scale's resolution (`gen.resolutions`), after the same
  decoding, aspect-preserving resize and `[-1, 1]` pixels as the uncached path;
- the frozen backbone's keys / values of the prompt at every layer, and its token ids: the
  first pass of `unimodal.queries.query_states_cached`.

Not cached: the query states. The learnable queries run through the frozen backbone and change
every step, so the condition cannot be written once; the prompt's keys / values can, because
the prompt does not attend to the queries. A cached step runs only the queries over them
(`query_states_from_kv`), as the `prefix_cache` path does, and skips image decoding, tokenising,
the prompt pass and the VAE. The empty prompt of `relative_queries` is still computed (one row).

Refused (`check_cacheable`, one line each): the procedural shapes world (infinite, not a fixed
dataset), editing (source images in the context, random reference dropout), a VAE sampling its
posterior (random), alignment to an external encoder (it reads pixels), a trainable backbone.

Layout: `DIR/index.json` (the fingerprint and the shards) and one `shard-NNNNNN.safetensors`
per data shard (a folder: per `per_shard` entries): `ok` (n,) (0: a bad record, skipped as the
stream skips it), `offsets` (n+1,) into the token axis, `ids` (T,), `k.{layer}` / `v.{layer}`
(H, T, d), `latent.{scale}` (n, C, h, w); the record keys and captions are in its metadata.
Cache shard i stands for data shard i and is read through the same `ShardStream` (rank split,
per-epoch order, skipping), so a cached run sees the same samples in the same order and resumes
the same way. Size: layers x 2 x kv-heads x head-dim x prompt tokens x dtype bytes per record.

Left out: the alignment encoder's features, and caches of the shapes world.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from unimodal.backbone import Prompt
from unimodal.config import ConfigError
from unimodal.data.folder import DataError
from unimodal.data.stream import BadRecord, ShardStream, process_layout
from unimodal.queries import PromptKV

INDEX = "index.json"
VERSION = 1


@dataclass
class CachedRecord:
    """One record's precomputed inputs."""

    ids: torch.Tensor  # (L,) prompt token ids
    keys: list[torch.Tensor]  # per layer (H, L, d)
    values: list[torch.Tensor]  # per layer (H, L, d)
    latents: list[torch.Tensor]  # per scale (C, h, w)


def check_cacheable(cfg: Any) -> None:
    """A one-line ConfigError when the run's frozen-part outputs cannot be written once."""
    g, d = cfg.gen, cfg.data
    why = None
    if d.kind == "shapes":
        why = "the shapes world is procedural and infinite; caches are for fixed datasets"
        why += " (data.kind = folder | webdataset | hf)"
    elif g.edit:
        why = "editing runs put source images in the prompt and drop references at random"
    elif g.vae.sample_posterior:
        why = "gen.vae.sample_posterior draws new latents every step"
    elif g.align_target == "encoder":
        why = "gen.align_target = 'encoder' reads the pixels, which the cache does not hold"
    if why:
        raise ConfigError(f"data.cache: not possible here: {why}")


def fingerprint(cfg: Any, gen: Any) -> dict[str, Any]:
    """What the cached tensors depend on, by config key (compared field by field on read)."""
    from unimodal.data.shards import resolve_shards
    from unimodal.queries import encode_prompts

    d = cfg.data
    if d.kind == "folder":
        files = [Path(d.root) / "metadata.jsonl"]
    else:
        files = [Path(f) for f in resolve_shards(d.root, d.kind)]
    probe = encode_prompts(gen.backbone, cfg.gen.prompt_prefix, ["a red circle", "x"])
    return {
        "version": VERSION,
        "model": weights_digest(gen.backbone.model),
        "model.dtype": str(gen.backbone.dtype),
        "gen.prompt_prefix / tokenizer": probe.input_ids.tolist(),
        "gen.vae": [gen.vae.fingerprint, weights_digest(gen.vae)],
        "gen.resolutions": list(cfg.gen.resolutions),
        "train.mixed_precision": precision(cfg.train.mixed_precision),
        "data.kind": d.kind,
        "data.root": [[f.name, f.stat().st_size] for f in files],
        "data.resize": d.resize,
        "data.background": d.background,
        "data.text_field": d.text_field,
        "data.image_field": d.image_field if d.kind == "hf" else "",
    }


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 over each tensor's name, shape, dtype, sum and first values: which weights."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        flat = t.detach().reshape(-1)
        head = flat[:16].double().cpu().tolist()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}{float(flat.double().sum()):.6e}{head}".encode())
    return h.hexdigest()[:16]


def precision(mixed_precision: str) -> str:
    """The autocast a run uses (`train.mixed_precision`, 'auto' resolved as the loop does)."""
    if mixed_precision == "auto":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return "bf16" if bf16 else "no"
    return mixed_precision


def check_fingerprint(root: Path, built: dict, here: dict) -> None:
    """A one-line ConfigError naming the first field where the cache and this run differ."""
    for field, value in here.items():
        if built.get(field) != value:
            old, new = (str(v)[:60] for v in (built.get(field), value))
            raise ConfigError(
                f"data.cache: {root} was built with a different {field} ({old} there, {new} "
                f"here); rebuild it with tools/cache.py and this run's config"
            )


class CacheReader:
    """A `ShardReader` over the cache's shard files, one loaded at a time."""

    def __init__(self, root: Path, index: dict):
        self.root = root
        self.shards = [str(root / s["file"]) for s in index["shards"]]
        self.counts = [s["count"] for s in index["shards"]]
        self.scales = len(index["fingerprint"]["gen.resolutions"])
        self._open: tuple[int, dict[str, torch.Tensor]] | None = None

    def count(self, shard: int) -> int:
        return self.counts[shard]

    def tensors(self, shard: int) -> dict[str, torch.Tensor]:
        if self._open is None or self._open[0] != shard:
            from safetensors.torch import load_file

            self._open = (shard, load_file(self.shards[shard]))
        return self._open[1]

    def read(self, shard: int, record: int) -> CachedRecord:
        t = self.tensors(shard)
        if not t["ok"][record]:
            raise BadRecord("a bad record of the source (skipped when the cache was written)")
        a, b = int(t["offsets"][record]), int(t["offsets"][record + 1])
        layers = range(sum(1 for k in t if k.startswith("k.")))
        return CachedRecord(
            t["ids"][a:b],
            [t[f"k.{i}"][:, a:b] for i in layers],
            [t[f"v.{i}"][:, a:b] for i in layers],
            [t[f"latent.{j}"][record] for j in range(self.scales)],
        )


class CachedGenData:
    """`GenData`'s twin over a cache: records by global sample index, the same ones in the same
    order as the uncached source (streams through `ShardStream`, a folder by index mod N)."""

    def __init__(self, cfg: Any, gen: Any, per_process: int | None = None):
        check_cacheable(cfg)
        if any(p.requires_grad for p in gen.backbone.parameters()):
            raise ConfigError("data.cache: the backbone trains, so its prompt states go stale")
        self.root = Path(cfg.data.cache)
        if not (self.root / INDEX).is_file():
            raise DataError(f"data.cache: no {INDEX} in {self.root} (write it with tools/cache.py)")
        index = json.loads((self.root / INDEX).read_text())
        check_fingerprint(self.root, index["fingerprint"], fingerprint(cfg, gen))
        self.reader = CacheReader(self.root, index)
        self.pad_id = gen.backbone.tokenizer.pad_token_id
        self.stream = None
        if cfg.data.kind != "folder":
            layout = process_layout(per_process)
            self.stream = ShardStream(self.reader, 0, cfg.train.seed, layout)
        self.per_shard, self.total = index["per_shard"], sum(self.reader.counts)

    def __getitem__(self, index: int) -> CachedRecord:
        if self.stream is not None:
            return self.stream.record(index)
        shard, record = divmod(index % self.total, self.per_shard)
        return self.reader.read(shard, record)

    def batch(self, gen: Any, records: list[CachedRecord]) -> tuple:
        """(PromptKV, pixels None, ref None, latents per scale) for `Generator.forward`."""
        return collate(records, self.pad_id)


def collate(records: list[CachedRecord], pad_id: int) -> tuple:
    """Left-pad the prompts (ids with `pad_id`, keys / values with zeros) and stack latents."""
    n = max(r.ids.shape[0] for r in records)

    def left(t: torch.Tensor, dim: int, value: float = 0) -> torch.Tensor:
        pad = [0, 0] * (t.dim() - 1 - dim) + [n - t.shape[dim], 0]
        return torch.nn.functional.pad(t, pad, value=value)

    ids = torch.stack([left(r.ids, 0, pad_id) for r in records])  # (B, L)
    mask = torch.stack([left(torch.ones_like(r.ids), 0) for r in records])  # (B, L)
    layers = range(len(records[0].keys))
    keys = [torch.stack([left(r.keys[i], 1) for r in records]) for i in layers]  # (B, H, L, d)
    values = [torch.stack([left(r.values[i], 1) for r in records]) for i in layers]
    latents = [torch.stack(z) for z in zip(*(r.latents for r in records))]  # [(B, C, h, w)]
    return PromptKV(Prompt(ids, mask, {}), keys, values), None, None, latents


def to_device(x: Any, device: torch.device | str) -> Any:
    """Tensors, prompts and lists / tuples of them moved to `device` (None stays None)."""
    if isinstance(x, list | tuple):
        return type(x)(to_device(t, device) for t in x)
    return x.to(device) if x is not None else None
