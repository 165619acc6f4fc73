"""Sharded record streams as a view indexable by the training position.

`tools/train_gen.py` asks for `data[i]` with the global sample index `i` that the training loop
saves and restores (`loop.take`). For a stream this file turns `i` into this process's local
position `k`, and `k` into (epoch, shard, record): the local shards are visited in an order
shuffled per epoch by (seed, epoch) and each shard's records in their stored order, so a resumed
run seeks straight to the right shard and record and sees exactly the samples it would have.

Splitting: with at least as many shards as processes, rank r reads shards r, r + W, r + 2W, ...
(only its own files); with fewer shards, every rank reads every shard and takes records
r, r + W, ... of each (round-robin by record). Dataloader workers are not used: records are
read in the training process, one shard open at a time.

Bad records (undecodable image, missing caption) are skipped and counted: the slot is filled by
the next readable record of the stream, a deterministic function of the position, and each new
bad record is logged to stderr with the running count. Left out: a shuffle buffer inside shards,
prefetching, aspect-ratio buckets.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from .folder import DataError, resize_crop

RESIZE_MODES = ("center_crop", "pad")


class BadRecord(Exception):
    """A record that cannot become a training sample (the message says why)."""


def fit_image(
    image: Image.Image, size: int, mode: str, background: tuple[int, int, int] = (255, 255, 255)
) -> Image.Image:
    """Aspect-preserving resize to `size x size`: `center_crop` fills and crops the longer side,
    `pad` fits the longer side and pads with `background`."""
    if mode == "center_crop":
        return resize_crop(image, size)
    if mode != "pad":
        raise ValueError(f"resize mode: unknown '{mode}' ({' | '.join(RESIZE_MODES)})")
    w, h = image.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new("RGB", (size, size), background)
    canvas.paste(
        image.resize((nw, nh), Image.Resampling.BICUBIC), ((size - nw) // 2, (size - nh) // 2)
    )
    return canvas


@dataclass(frozen=True)
class Layout:
    """Where this process's samples sit in each global micro-batch (as `loop.take` lays it out:
    process p takes indices [m*B + p*P, m*B + (p+1)*P) of micro-batch m, B = P * world)."""

    rank: int = 0
    world: int = 1
    per_process: int | None = None

    def local(self, index: int) -> int:
        """Global sample index -> this process's position in its own stream."""
        if self.world == 1:
            return index
        if not self.per_process:
            raise DataError(
                "a sharded stream under several processes needs the per-process batch "
                "(GenData(..., per_process=run.per_process))"
            )
        p = self.per_process
        m, r = divmod(index, p * self.world)
        owner, j = divmod(r, p)
        if owner != self.rank:
            raise DataError(f"sample {index} belongs to process {owner}, not {self.rank}")
        return m * p + j


def process_layout(per_process: int | None = None) -> Layout:
    """This process's rank and the world size (torch.distributed, else RANK / WORLD_SIZE)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Layout(dist.get_rank(), dist.get_world_size(), per_process)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return Layout(rank, world, per_process)


class ShardReader(Protocol):
    """Random access to the records of a list of shards."""

    shards: list[str]

    def count(self, shard: int) -> int: ...

    def read(self, shard: int, record: int) -> Any:
        """(RGB image, caption) (a cache's reader: its tensors); BadRecord for an unusable one."""
        ...


class ShardStream:
    """This process's records of `reader`, indexable by the global sample index."""

    def __init__(
        self,
        reader: ShardReader,
        size: int,
        seed: int,
        layout: Layout,
        resize: str = "center_crop",
        background: tuple[int, int, int] = (255, 255, 255),
    ) -> None:
        self.reader, self.size, self.seed, self.layout = reader, size, seed, layout
        self.resize, self.background = resize, background
        n, w, r = len(reader.shards), layout.world, layout.rank
        if n >= w:  # (shard, first record, stride): whole shards per rank
            self.units = [(s, 0, 1) for s in range(r, n, w)]
        else:  # fewer shards than processes: round-robin by record
            self.units = [(s, r, w) for s in range(n)]
        self.lengths = [len(range(first, reader.count(s), step)) for s, first, step in self.units]
        self.total = sum(self.lengths)
        if self.total == 0:
            raise DataError(f"no records for process {r} of {w} in {n} shard(s)")
        self.bad: set[tuple[int, int]] = set()
        self._epoch: tuple[int, np.ndarray, np.ndarray] | None = None

    @property
    def skipped(self) -> int:
        """Distinct bad records met so far."""
        return len(self.bad)

    def locate(self, k: int) -> tuple[int, int, int]:
        """Local position -> (epoch, shard, record)."""
        epoch, rest = divmod(k, self.total)
        if self._epoch is None or self._epoch[0] != epoch:
            order = np.random.default_rng([self.seed, epoch, 23]).permutation(len(self.units))
            self._epoch = (epoch, order, np.cumsum([self.lengths[u] for u in order]))
        _, order, ends = self._epoch
        i = int(np.searchsorted(ends, rest, side="right"))
        offset = rest - (int(ends[i - 1]) if i else 0)
        shard, first, step = self.units[int(order[i])]
        return epoch, shard, first + offset * step

    def __getitem__(self, index: int) -> tuple[Image.Image, str]:
        """(image resized to `size`, caption) for the global sample index."""
        image, text = self.record(index)
        return fit_image(image, self.size, self.resize, self.background), text

    def record(self, index: int) -> Any:
        """The reader's record for the global sample index, as read (bad records skipped)."""
        k = self.layout.local(index)
        for t in range(self.total):
            _, shard, record = self.locate(k + t)
            try:
                return self.reader.read(shard, record)
            except BadRecord as e:
                self._skip(shard, record, str(e))
        raise DataError(f"no readable record in {len(self.reader.shards)} shard(s)")

    def _skip(self, shard: int, record: int, why: str) -> None:
        if (shard, record) in self.bad:
            return
        self.bad.add((shard, record))
        n = self.skipped
        if n <= 10 or n % 1000 == 0:
            where = f"{self.reader.shards[shard]} record {record}"
            print(f"data: skipped {where}: {why} ({n} bad records so far)", file=sys.stderr)
