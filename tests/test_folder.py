"""Folder dataset (imagefolder metadata.jsonl) on real emoji, and its one-line errors."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from unimodal.data import DataError, FolderImageDataset, prepare_emoji_folder
from unimodal.data.folder import resize_crop

EMOJI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "noto-emoji"
TAR, CAPTIONS = EMOJI / "noto-emoji-png72.tar", EMOJI / "captions.jsonl"


@pytest.fixture(scope="module")
def emoji_dir(tmp_path_factory) -> Path:
    if not TAR.is_file():
        pytest.skip(f"shared emoji data not found at {EMOJI}")
    return prepare_emoji_folder(TAR, CAPTIONS, tmp_path_factory.mktemp("emoji"), limit=50)


def test_emoji_folder_loads(emoji_dir):
    rows = [json.loads(x) for x in (emoji_dir / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 50 and len(list(emoji_dir.glob("*.png"))) == 50
    names = {}
    for line in CAPTIONS.read_text().splitlines():
        r = json.loads(line)
        names.setdefault(r["file"], r["name"])
    assert all(r["text"] == names[r["file_name"]] for r in rows)
    ds = FolderImageDataset(emoji_dir, size=32)
    assert len(ds) == 50
    for i in (0, 17, 49):
        item = ds[i]
        assert item["pixels"].shape == (3, 32, 32) and item["pixels"].dtype == torch.float32
        assert -1 <= item["pixels"].min() and item["pixels"].max() <= 1
        assert item["pixels"].std() > 0.05  # not a blank image
        assert item["text"] == rows[i]["text"]


def test_transparency_goes_onto_the_chosen_background(emoji_dir):
    white = FolderImageDataset(emoji_dir, size=64)
    black = FolderImageDataset(emoji_dir, size=64, background=(0, 0, 0))
    a, b = white[0]["pixels"], black[0]["pixels"]
    assert a[:, 0, 0].tolist() == [1.0, 1.0, 1.0]  # transparent corner
    assert b[:, 0, 0].tolist() == [-1.0, -1.0, -1.0]


def test_resize_crop_non_square():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue left quarter is cropped away
    out = resize_crop(img, 16)
    assert out.size == (16, 16) and out.getpixel((0, 8))[0] > 200


def _folder(tmp_path: Path, lines: list[str], images=("a.png",)) -> Path:
    for name in images:
        Image.new("RGB", (8, 8), (0, 255, 0)).save(tmp_path / name)
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def _error(root, match: str) -> str:
    with pytest.raises(DataError, match=match) as e:
        FolderImageDataset(root, size=8)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_missing_root_and_metadata(tmp_path):
    assert str(tmp_path / "nope") in _error(tmp_path / "nope", "does not exist")
    assert str(tmp_path / "metadata.jsonl") in _error(tmp_path, "missing")


def test_malformed_lines(tmp_path):
    ok = '{"file_name": "a.png", "text": "green"}'
    msg = _error(_folder(tmp_path, [ok, "{not json"]), "malformed JSON")
    assert "metadata.jsonl:2" in msg
    assert "metadata.jsonl:1" in _error(_folder(tmp_path, ["[1, 2]"]), "expected a JSON object")
    _error(_folder(tmp_path, ['{"file_name": "a.png"}']), "missing field 'text'")
    _error(_folder(tmp_path, ['{"text": "x"}']), "missing field 'file_name'")
    _error(_folder(tmp_path, ['{"file_name": "a.png", "text": 3}']), "must be a string")
    _error(_folder(tmp_path, ["", "  "]), "lists no images")
    _error(_folder(tmp_path, ['{"file_name": "../x.png", "text": "x"}']), "outside")


def test_missing_and_corrupt_images(tmp_path):
    root = _folder(tmp_path, ['{"file_name": "gone.png", "text": "x"}'])
    assert "gone.png" in _error(root, "does not exist")
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "bad.png", "text": "x"}\n')
    ds = FolderImageDataset(tmp_path, size=8)  # metadata is fine; decoding is lazy
    with pytest.raises(DataError, match="cannot decode image") as e:
        ds[0]
    assert str(tmp_path / "bad.png") in str(e.value) and "\n" not in str(e.value)


def test_prepare_emoji_errors(tmp_path):
    with pytest.raises(DataError, match="missing"):
        prepare_emoji_folder(tmp_path / "x.tar", tmp_path / "c.jsonl", tmp_path / "out")
