"""Sharded generation data: WebDataset tars and HF parquet built from real emoji by
tools/make_shards.py; decoding, bad-record skipping, exact resume, per-rank splits, and 2 steps
of tools/train_gen.py from each kind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from tools.make_shards import folder_records, main, write_parquet, write_shards
from unimodal.config import load_config
from unimodal.data import DataError, Layout, fit_image, open_stream, prepare_emoji_folder
from unimodal.gendata import GenData, GenDataConfig

N_GOOD, PER_SHARD = 40, 8
N_BAD = 2  # a corrupt image and a record without caption


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory) -> dict:
    emoji = shared_data / "noto-emoji"
    tmp = tmp_path_factory.mktemp("shards")
    folder = prepare_emoji_folder(
        emoji / "noto-emoji-png72.tar", emoji / "captions.jsonl", tmp / "folder", limit=N_GOOD
    )
    records = folder_records(folder)
    _, image, text = records[0]
    records.insert(5, ("bad5.png", b"not an image at all", text))  # undecodable image
    records.insert(17, ("bad17.png", image, None))  # no caption
    shards = write_shards(records, tmp / "tars", PER_SHARD)
    parquet = [  # three files: three shards of the hf stream
        write_parquet(records[i : i + 14], tmp / "pq" / f"part-{i // 14}.parquet")
        for i in range(0, len(records), 14)
    ]
    texts = {t for _, _, t in records if t is not None}
    return {
        "folder": folder,
        "tars": tmp / "tars",
        "shards": shards,
        "parquet": parquet,
        "texts": texts,
        "records": records,
        "tmp": tmp,
    }


def root_of(built, kind: str) -> str:
    return str(built["tars"] / "*.tar") if kind == "webdataset" else str(built["tmp"] / "pq")


def test_make_shards_cli(built, tmp_path):
    report = main(
        [
            "--folder",
            str(built["folder"]),
            "--out",
            str(tmp_path / "s"),
            "--per-shard",
            "16",
            "--parquet",
            str(tmp_path / "d.parquet"),
        ]
    )
    assert report["records"] == N_GOOD and len(report["shards"]) == 3
    assert Path(report["parquet"]).is_file()
    assert len(built["shards"]) == 6  # 42 records by 8


@pytest.mark.parametrize("kind", ["webdataset", "hf"])
def test_decodes_and_skips_bad_records(built, kind):
    stream = open_stream(kind, root_of(built, kind), 32, seed=0, layout=Layout())
    assert stream.total == N_GOOD + N_BAD
    seen = [stream[i] for i in range(stream.total)]  # one epoch: never raises
    assert stream.skipped == N_BAD
    for image, text in seen:
        assert image.size == (32, 32) and image.mode == "RGB"
        assert text in built["texts"]
    assert (
        len({t for _, t in seen}) >= N_GOOD - 2
    )  # every good record shows up (a bad slot repeats a neighbour)


@pytest.mark.parametrize("kind", ["webdataset", "hf"])
def test_exact_resume_of_the_position(built, kind):
    cfg = GenDataConfig(kind=kind, root=root_of(built, kind))
    straight = GenData(cfg, 16, seed=3)
    a = [straight[i] for i in range(70)]  # crosses into the second epoch (reshuffled shards)
    resumed = GenData(cfg, 16, seed=3)  # a fresh process restored at position 37
    b = [resumed[i] for i in range(37, 70)]
    for x, y in zip(a[37:], b, strict=True):
        assert x.text == y.text
        torch.testing.assert_close(x.pixels, y.pixels)
    other = GenData(cfg, 16, seed=4)
    assert [s.text for s in a[:42]] != [other[i].text for i in range(42)]  # seeded shard order


def take_all(stream, layout: Layout, micro_steps: int) -> list[str]:
    """What `loop.take` hands this rank over `micro_steps` micro-steps."""
    p, b = layout.per_process, layout.per_process * layout.world
    return [stream[m * b + layout.rank * p + j][1] for m in range(micro_steps) for j in range(p)]


@pytest.mark.parametrize("per_shard", [PER_SHARD, 100])  # 6 shards; 1 shard (round-robin)
def test_each_rank_reads_its_own_shards(built, tmp_path, per_shard):
    tars = write_shards(built["records"], tmp_path, per_shard)
    streams = [
        open_stream("webdataset", str(tmp_path), 16, 0, Layout(r, 2, per_process=2))
        for r in range(2)
    ]
    if len(tars) >= 2:  # whole shards per rank
        assert {u[0] for u in streams[0].units} == {0, 2, 4}
        assert {u[0] for u in streams[1].units} == {1, 3, 5}
    else:
        assert streams[0].units == [(0, 0, 2)] and streams[1].units == [(0, 1, 2)]
    texts = [take_all(s, s.layout, s.total // 2) for s in streams]
    keys = [set(t) for t in texts]
    assert len(keys[0] & keys[1]) <= 1  # disjoint records (bar a bad slot's neighbour)
    assert len(keys[0] | keys[1]) >= N_GOOD - 2
    with pytest.raises(DataError, match="belongs to process 0"):
        streams[1][0]


def test_errors_name_the_path(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "nothing"))):
        GenData(GenDataConfig(kind="webdataset", root=str(tmp_path / "nothing" / "*.tar")), 16, 0)
    with pytest.raises(ValueError, match="data.resize"):
        GenDataConfig(kind="hf", root="x.parquet", resize="stretch")
    with pytest.raises(DataError, match="per-process batch"):
        Layout(0, 2).local(0)


def test_resize_modes_keep_the_aspect_ratio():
    wide = Image.new("RGB", (40, 20), (255, 0, 0))
    crop = fit_image(wide, 16, "center_crop")
    pad = fit_image(wide, 16, "pad", (0, 0, 0))
    assert crop.size == pad.size == (16, 16)
    assert crop.getpixel((8, 0)) == (255, 0, 0)  # filled to the edge
    assert pad.getpixel((8, 0)) == (0, 0, 0) and pad.getpixel((8, 8)) == (255, 0, 0)


@pytest.mark.parametrize("kind", ["webdataset", "hf"])
def test_train_gen_two_steps_from_shards(built, tiny_backbone_dir, tmp_path, kind):
    from tools.train_gen import CONFIG
    from tools.train_gen import main as train

    out = tmp_path / "run"
    args = [
        f"--model.path={tiny_backbone_dir}",
        f"--train.out_dir={out}",
        f"--data.kind={kind}",
        f"--data.root={root_of(built, kind)}",
        "--data.resize=pad",
        "--train.steps=2",
        "--train.batch_size=2",
        "--train.warmup_steps=1",
        "--sample.every=0",
        "--eval.n_per_category=0",
        "--gen.resolutions=[8,16,32]",
    ]
    train(load_config(CONFIG, args))
    assert (out / "final" / "generator.safetensors").is_file()


def test_train_gen_resumes_the_stream_exactly(built, tiny_backbone_dir, tmp_path):
    from tools.train_gen import CONFIG
    from tools.train_gen import main as train
    from unimodal import checkpoint

    def run(out: Path, *extra: str) -> None:
        args = [
            f"--model.path={tiny_backbone_dir}",
            f"--train.out_dir={out}",
            "--data.kind=webdataset",
            f"--data.root={built['tars']}",
            "--train.steps=3",
            "--train.batch_size=4",  # 12 samples: crosses shards (8 records each)
            "--train.save_every=1",
            "--train.warmup_steps=1",
            "--sample.every=0",
            "--eval.n_per_category=0",
            "--gen.resolutions=[8,16,32]",
        ]
        train(load_config(CONFIG, args + list(extra)))

    run(tmp_path / "straight")
    run(tmp_path / "resumed", "--train.stop_at=1")
    run(tmp_path / "resumed")
    a = checkpoint.load_weights(checkpoint.latest(tmp_path / "straight"), "trainable")
    b = checkpoint.load_weights(checkpoint.latest(tmp_path / "resumed"), "trainable")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_folder_kind_keeps_its_crop_and_gains_pad(built):
    from unimodal.data import FolderImageDataset

    crop = GenData(GenDataConfig(kind="folder", root=str(built["folder"])), 32, 0)
    reference = FolderImageDataset(built["folder"], 32)
    torch.testing.assert_close(crop[3].pixels, reference[3]["pixels"])
    assert crop[3].text == reference[3]["text"]
    pad = GenData(GenDataConfig(kind="folder", root=str(built["folder"]), resize="pad"), 32, 0)
    assert pad[3].pixels.shape == (3, 32, 32)
