"""Readers for sharded image-caption data on local disk: WebDataset tars and HF parquet / arrow.

`webdataset`: tar shards in the WebDataset layout, a record = the members sharing a key (the
path up to the first dot of the base name): an image `{key}.jpg|jpeg|png|webp` and a caption
`{key}.txt` or `{key}.json` (the caption in its `text_field`). Read with the standard library's
`tarfile` (random access by member offset; shards written by `webdataset.ShardWriter` or
`tools/make_shards.py` read the same). Record counts come from one pass over the tar headers.
`hf`: parquet or arrow files read by Hugging Face `datasets` with `streaming=True`, one file per
shard (counts from the file metadata), image decoding by PIL here (`datasets` decoding off) so a
bad image is a skipped record, not a crash. Nothing is downloaded: `root` is a local glob or
directory. Left out: remote URLs, brace expansion (`{000..009}`), compressed tars.
"""

from __future__ import annotations

import glob
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from PIL import Image

from .folder import DataError, load_rgb
from .stream import BadRecord, Layout, ShardStream

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
SUFFIXES = {"webdataset": (".tar",), "hf": (".parquet", ".arrow")}


def resolve_shards(root: str, kind: str) -> list[str]:
    """Sorted files of `kind` matching the glob `root` (or inside the directory `root`)."""
    suffixes = SUFFIXES[kind]
    if Path(root).is_dir():
        files = [str(p) for p in Path(root).iterdir() if p.suffix in suffixes]
    else:
        files = [f for f in glob.glob(root, recursive=True) if Path(f).suffix in suffixes]
    if not files:
        raise DataError(f"data.root: no {' / '.join(suffixes)} files match {root}")
    return sorted(files)


def decode(data: bytes, background: tuple[int, int, int]) -> Image.Image:
    try:
        return load_rgb(io.BytesIO(data), background)
    except DataError:
        raise BadRecord(f"undecodable image ({len(data)} bytes)") from None


def caption_of(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRecord(f"no caption ({where})")
    return value


class TarReader:
    """WebDataset tar shards, one open at a time."""

    def __init__(self, shards: list[str], text_field: str, background: tuple[int, int, int]):
        self.shards, self.text_field, self.background = shards, text_field, background
        self._counts: dict[int, int] = {}
        self._open: tuple[int, tarfile.TarFile, list[dict[str, tarfile.TarInfo]]] | None = None

    def _index(self, shard: int) -> tuple[tarfile.TarFile, list[dict[str, tarfile.TarInfo]]]:
        if self._open is None or self._open[0] != shard:
            if self._open is not None:
                self._open[1].close()
            try:
                tar = tarfile.open(self.shards[shard], mode="r:")
                members = tar.getmembers()
            except (OSError, tarfile.TarError) as e:
                raise DataError(f"cannot read shard {self.shards[shard]}: {e}") from None
            records: dict[str, dict[str, tarfile.TarInfo]] = {}
            for m in members:
                if m.isfile():
                    d, base = m.name.rpartition("/")[0], m.name.rpartition("/")[2]
                    key, _, ext = base.partition(".")
                    records.setdefault(f"{d}/{key}", {})[ext.lower()] = m
            self._open = (shard, tar, list(records.values()))
        return self._open[1], self._open[2]

    def count(self, shard: int) -> int:
        if shard not in self._counts:
            self._counts[shard] = len(self._index(shard)[1])
        return self._counts[shard]

    def key(self, shard: int, record: int) -> str:
        """The record's WebDataset key (member path up to the first dot of the base name)."""
        rec = self._index(shard)[1][record]
        d, _, base = rec[next(iter(rec))].name.rpartition("/")
        return f"{d}/{base.partition('.')[0]}".lstrip("/")

    def read(self, shard: int, record: int) -> tuple[Image.Image, str]:
        tar, records = self._index(shard)
        rec = records[record]
        image = next((rec[e] for e in IMAGE_EXTS if e in rec), None)
        name = rec[next(iter(rec))].name
        if image is None:
            raise BadRecord(f"no image member for {name}")
        if "txt" in rec:
            text = tar.extractfile(rec["txt"]).read().decode("utf-8", "replace")
        elif "json" in rec:
            try:
                meta = json.loads(tar.extractfile(rec["json"]).read())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise BadRecord(f"malformed json for {name}: {e}") from None
            text = meta.get(self.text_field) if isinstance(meta, dict) else None
        else:
            text = None
        text = caption_of(text, name)
        return decode(tar.extractfile(image).read(), self.background), text.strip()


def count_rows(path: str) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.endswith(".parquet"):
            return pq.ParquetFile(path).metadata.num_rows
        with pa.memory_map(path) as source:
            try:
                return pa.ipc.open_stream(source).read_all().num_rows
            except pa.ArrowInvalid:
                return pa.ipc.open_file(source).read_all().num_rows
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"cannot read {path}: {e}") from None


class HFReader:
    """Parquet / arrow files through `datasets.load_dataset(..., streaming=True)`, one file per
    shard; a forward read continues the open stream, any other one restarts it with `skip`."""

    def __init__(self, shards, image_field: str, text_field: str, background):
        self.shards, self.image_field, self.text_field = shards, image_field, text_field
        self.background = background
        self._counts = [count_rows(s) for s in shards]
        self._it: tuple[int, int, Any] | None = None  # (shard, next record, iterator)

    def count(self, shard: int) -> int:
        return self._counts[shard]

    def _row(self, shard: int, record: int) -> dict:
        if self._it is None or self._it[0] != shard or self._it[1] > record:
            from datasets import load_dataset

            path = self.shards[shard]
            builder = "parquet" if path.endswith(".parquet") else "arrow"
            ds = load_dataset(builder, data_files=[path], split="train", streaming=True)
            self._it = (shard, record, iter(ds.decode(False).skip(record)))
        shard, at, it = self._it
        for _ in range(record - at):
            next(it)
        row = next(it)
        self._it = (shard, record + 1, it)
        return row

    def key(self, shard: int, record: int) -> str:
        return f"{Path(self.shards[shard]).name}:{record}"

    def read(self, shard: int, record: int) -> tuple[Image.Image, str]:
        row = self._row(shard, record)
        where = f"row {record}"
        for field in (self.image_field, self.text_field):
            if field not in row:
                raise DataError(f"{self.shards[shard]}: no column {field!r} (has {list(row)})")
        value = row[self.image_field]
        if isinstance(value, dict):
            value = value.get("bytes")
        if isinstance(value, Image.Image):
            return value.convert("RGB"), caption_of(row[self.text_field], where)
        if not isinstance(value, bytes | bytearray) or not value:
            raise BadRecord(f"no image bytes ({where})")
        text = caption_of(row[self.text_field], where)
        return decode(bytes(value), self.background), text.strip()


def open_stream(
    kind: str,
    root: str,
    size: int,
    seed: int,
    layout: Layout,
    resize: str = "center_crop",
    background: tuple[int, int, int] = (255, 255, 255),
    text_field: str = "text",
    image_field: str = "image",
) -> ShardStream:
    """The `webdataset` or `hf` stream of the shards under `root` for this process."""
    shards = resolve_shards(root, kind)
    if kind == "webdataset":
        reader = TarReader(shards, text_field, background)
    else:
        reader = HFReader(shards, image_field, text_field, background)
    return ShardStream(reader, size, seed, layout, resize, background)
