"""Write WebDataset tar shards (and optionally a parquet file) from a captioned image folder.

    python tools/make_shards.py --folder data/emoji --out data/emoji_shards --per-shard 1000
    python tools/make_shards.py --folder data/emoji --out data/emoji_shards --parquet data/emoji.parquet

The folder is the `folder` layout (`metadata.jsonl` with `file_name` and `text`, see
unimodal/data/folder.py). Shards are `OUT/shard-000000.tar`, ... with members `{key}.{ext}`
(the image bytes as they are) and `{key}.txt` (the caption); keys are the record's number.
The parquet file has an `image` column in the Hugging Face Image layout ({bytes, path}) and a
`text` column. Train on them with `--data.kind=webdataset --data.root='OUT/*.tar'` or
`--data.kind=hf --data.root=FILE.parquet`.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

from unimodal.data.folder import read_metadata


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def write_shards(
    records: list[tuple[str, bytes, str | None]], out: str | Path, per_shard: int
) -> list[Path]:
    """`records` = (key, image bytes with their extension in the key's suffix, caption or None)
    into tars of `per_shard` records each; a None caption writes no caption member."""
    if per_shard < 1:
        raise ValueError(f"per_shard must be >= 1, got {per_shard}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, len(records), per_shard):
        path = out / f"shard-{start // per_shard:06d}.tar"
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
            for key, image, text in records[start : start + per_shard]:
                stem, _, ext = key.rpartition(".")
                add_member(tar, f"{stem}.{ext}", image)
                if text is not None:
                    add_member(tar, f"{stem}.txt", text.encode("utf-8"))
        paths.append(path)
    return paths


def write_parquet(records: list[tuple[str, bytes, str | None]], path: str | Path) -> Path:
    """The same records as one parquet file with HF `Image` and `text` columns."""
    from datasets import Dataset, Features, Image, Value

    features = Features({"image": Image(), "text": Value("string")})
    columns = {
        "image": [{"bytes": data, "path": key} for key, data, _ in records],
        "text": [text for _, _, text in records],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(columns, features=features).to_parquet(str(path))
    return path


def folder_records(folder: str | Path) -> list[tuple[str, bytes, str | None]]:
    """(key, image bytes, caption) for each image of a `folder` dataset, in metadata order."""
    entries = read_metadata(Path(folder))
    return [(f"{i:09d}{p.suffix.lower()}", p.read_bytes(), t) for i, (p, t) in enumerate(entries)]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", required=True, help="image folder with metadata.jsonl")
    ap.add_argument("--out", required=True, help="output directory for the .tar shards")
    ap.add_argument("--per-shard", type=int, default=1000, help="records per shard")
    ap.add_argument("--parquet", default="", help="also write this parquet file")
    args = ap.parse_args(argv)
    records = folder_records(args.folder)
    shards = write_shards(records, args.out, args.per_shard)
    report = {"records": len(records), "shards": [str(p) for p in shards]}
    if args.parquet:
        report["parquet"] = str(write_parquet(records, args.parquet))
    print(json.dumps({**report, "shards": len(shards)}), flush=True)
    return report


if __name__ == "__main__":
    main()
