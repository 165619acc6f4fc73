"""Writing a generation cache (`tools/cache.py`): see `unimodal.gencache` for what and why.

Records are read as the uncached run reads them (`GenData`'s decoding, resize and pixels), in
batches through the frozen backbone's prompt pass (no queries) and the VAE, under the run's
autocast; each row's keys / values are cut to its own tokens (the padding dropped). One cache
shard per data shard (a folder: `per_shard` entries each); `index.json` is written last, so an
interrupted build has no index and is refused by a run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from unimodal.data.folder import to_pixels
from unimodal.data.stream import BadRecord, fit_image
from unimodal.gencache import INDEX, VERSION, check_cacheable, fingerprint, precision
from unimodal.gendata import GenData

Record = tuple[str, str, torch.Tensor] | None  # (key, caption, pixels (3, H, W)); None: bad


def units(data: GenData, per_shard: int) -> Iterator[tuple[str, int, Callable[[int], Record]]]:
    """(source name, records, read(i)) per cache shard, in the order a run indexes them."""
    if data.stream is None:  # a folder: chunks of its entries
        entries = data.folder.entries
        for start in range(0, len(entries), per_shard):
            n = min(per_shard, len(entries) - start)

            def read(i: int, start: int = start) -> Record:
                sample = data[start + i]
                return entries[start + i][0].name, sample.text, sample.pixels

            yield f"metadata.jsonl[{start}:{start + n}]", n, read
        return
    stream, reader = data.stream, data.stream.reader
    for s, name in enumerate(reader.shards):

        def read(i: int, s: int = s) -> Record:
            try:
                image, text = reader.read(s, i)
            except BadRecord:
                return None
            image = fit_image(image, stream.size, stream.resize, stream.background)
            return reader.key(s, i), text, to_pixels(image)

        yield Path(name).name, reader.count(s), read


@torch.no_grad()
def encode_rows(gen: Any, texts: list[str], pixels: torch.Tensor, autocast: Any) -> list[dict]:
    """Per row: prompt ids (L,), keys / values per layer (H, L, d), latents per scale."""
    device = gen.backbone.device
    prompt = gen.encode_prompts(texts).to(device)
    pixels = pixels.to(device)
    with autocast:
        cache = gen.backbone.run(prompt, use_cache=True).cache
        latents = [gen.encode_latents(pixels, k) for k in range(len(gen.cfg.resolutions))]
    rows = []
    for b, n in enumerate(prompt.attention_mask.sum(1).tolist()):
        rows.append(
            {
                "ids": prompt.input_ids[b, -n:].cpu(),
                "k": [layer.keys[b, :, -n:].cpu() for layer in cache.layers],
                "v": [layer.values[b, :, -n:].cpu() for layer in cache.layers],
                "latents": [z[b].cpu() for z in latents],
            }
        )
    return rows


def shard_tensors(rows: list[dict | None]) -> dict[str, torch.Tensor]:
    """One shard's tensors from its rows (None: a bad record, zero tokens and zero latents)."""
    good = [r for r in rows if r is not None]
    if not good:
        raise ValueError("a cache shard without one readable record")
    like = good[0]
    lengths = [r["ids"].shape[0] if r is not None else 0 for r in rows]
    out = {
        "ok": torch.tensor([r is not None for r in rows], dtype=torch.uint8),
        "offsets": torch.tensor([0, *lengths]).cumsum(0),
        "ids": torch.cat([r["ids"] for r in good]),
    }
    for i in range(len(like["k"])):
        out[f"k.{i}"] = torch.cat([r["k"][i] for r in good], 1).contiguous()  # (H, T, d)
        out[f"v.{i}"] = torch.cat([r["v"][i] for r in good], 1).contiguous()
    for j, z in enumerate(like["latents"]):
        stack = [r["latents"][j] if r is not None else torch.zeros_like(z) for r in rows]
        out[f"latent.{j}"] = torch.stack(stack).contiguous()  # (n, C, h, w)
    return out


def write_unit(gen, read, n: int, batch: int, autocast, path: Path) -> tuple[int, int]:
    """Encode records 0..n-1 of one unit into the shard file `path`; (records, bad)."""
    from safetensors.torch import save_file

    rows: list[dict | None] = [None] * n
    keys, texts = [""] * n, [""] * n
    pending: list[int] = []
    pixels: list[torch.Tensor] = []

    def flush() -> None:
        batch_texts = [texts[i] for i in pending]
        for i, row in zip(pending, encode_rows(gen, batch_texts, torch.stack(pixels), autocast)):
            rows[i] = row
        pending.clear()
        pixels.clear()

    for i in range(n):
        rec = read(i)
        if rec is None:
            continue
        keys[i], texts[i], image = rec
        pending.append(i)
        pixels.append(image)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    meta = {"keys": json.dumps(keys), "texts": json.dumps(texts)}
    save_file(shard_tensors(rows), str(path), metadata=meta)
    return n, sum(r is None for r in rows)


def write_cache(cfg: Any, gen: Any, out: Path, batch: int = 32, per_shard: int = 1024) -> dict:
    """Write the cache of `cfg.data` for the frozen parts of `gen` into `out`; its index."""
    check_cacheable(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / INDEX).unlink(missing_ok=True)
    gen.eval()
    data = GenData(cfg.data, max(cfg.gen.resolutions), cfg.train.seed)
    mp = precision(cfg.train.mixed_precision)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mp, torch.float32)
    device = gen.backbone.device
    autocast = torch.autocast(device.type, dtype=dtype, enabled=mp in ("bf16", "fp16"))
    shards, started = [], time.perf_counter()
    for i, (source, n, read) in enumerate(units(data, per_shard)):
        name = f"shard-{i:06d}.safetensors"
        count, bad = write_unit(gen, read, n, batch, autocast, out / name)
        shards.append({"file": name, "source": source, "count": count, "bad": bad})
        print(f"cache: {name} <- {source}: {count} records ({bad} bad)", flush=True)
    index = {
        "version": VERSION,
        "fingerprint": fingerprint(cfg, gen),
        "per_shard": per_shard,
        "shards": shards,
        "records": sum(s["count"] for s in shards),
        "bad": sum(s["bad"] for s in shards),
        "bytes": sum((out / s["file"]).stat().st_size for s in shards),
        "seconds": time.perf_counter() - started,
    }
    (out / INDEX).write_text(json.dumps(index, indent=1) + "\n")
    return index
