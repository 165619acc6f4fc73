"""Turn the Noto emoji tarball plus its captions into an imagefolder for FolderImageDataset.

Input: a tar with members ``<dir>/<file>.png`` and a captions.jsonl whose lines carry ``file``
and ``name``. Output: ``out_dir/<file>.png`` and ``out_dir/metadata.jsonl`` with
``{"file_name": <file>, "text": <name>}``. Only regular ``.png`` members named in the
captions are written, by base name, so a hostile archive cannot write outside ``out_dir``.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from .folder import METADATA, DataError


def prepare_emoji_folder(
    tar_path: str | Path,
    captions_path: str | Path,
    out_dir: str | Path,
    limit: int | None = None,
) -> Path:
    """Unpack up to ``limit`` captioned emoji (in captions order) and write metadata.jsonl."""
    tar_path, captions_path, out = Path(tar_path), Path(captions_path), Path(out_dir)
    for p in (tar_path, captions_path):
        if not p.is_file():
            raise DataError(f"missing {p}")
    captions: dict[str, str] = {}
    with captions_path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                    captions.setdefault(Path(row["file"]).name, str(row["name"]))
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise DataError(f"{captions_path}:{n}: bad caption line ({e})") from None
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        with tarfile.open(tar_path) as tar:
            members = {
                Path(m.name).name: m
                for m in tar.getmembers()
                if m.isfile() and m.name.endswith(".png")
            }
            for name, text in captions.items():
                if limit is not None and len(rows) >= limit:
                    break
                if name not in members:
                    continue
                data = tar.extractfile(members[name])
                (out / name).write_bytes(data.read() if data else b"")
                rows.append({"file_name": name, "text": text})
    except tarfile.TarError as e:
        raise DataError(f"cannot read {tar_path}: {e}") from None
    if not rows:
        raise DataError(f"no captioned .png members in {tar_path}")
    with (out / METADATA).open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return out
