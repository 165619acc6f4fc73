"""Precomputed generation caches (tools/cache.py, unimodal/gencache.py) on real emoji: the
cached samples are the uncached ones in the same order (bad records skipped alike), the same
batch gives the same loss and gradients, training from the cache matches the uncached run
through a resume, and a cache built for something else is refused with a line naming it."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKL

from tools.make_shards import folder_records, write_parquet, write_shards
from unimodal.backbone import Backbone
from unimodal.config import ConfigError, load_config
from unimodal.data import DataError, prepare_emoji_folder
from unimodal.gencache import CachedGenData
from unimodal.gencache_write import write_cache
from unimodal.gendata import GenData
from unimodal.generator import Generator
from unimodal.train.gen_config import GenTrainConfig

N, PER_SHARD = 14, 5  # + 1 bad record: 3 tar shards


@pytest.fixture(scope="module")
def data(shared_data, tmp_path_factory) -> dict:
    emoji = shared_data / "noto-emoji"
    tmp = tmp_path_factory.mktemp("gencache")
    folder = prepare_emoji_folder(
        emoji / "noto-emoji-png72.tar", emoji / "captions.jsonl", tmp / "folder", limit=N
    )
    records = folder_records(folder)
    records.insert(3, ("bad.png", b"not an image", "a broken record"))
    write_shards(records, tmp / "tars", PER_SHARD)
    write_parquet(records[:8], tmp / "pq" / "part-0.parquet")
    write_parquet(records[8:], tmp / "pq" / "part-1.parquet")
    torch.manual_seed(0)
    AutoencoderKL(
        block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, latent_channels=4,
        sample_size=32, scaling_factor=0.5, shift_factor=0.1,
    ).save_pretrained(tmp / "kl" / "vae")  # fmt: skip
    roots = {"folder": folder, "webdataset": tmp / "tars", "hf": tmp / "pq"}
    return {"roots": roots, "kl": tmp / "kl", "tmp": tmp}


KL = ["--gen.decoder.in_channels=4", "--gen.decoder.sample_size=16", "--gen.decoder.patch_size=2"]


def config(data, backbone, kind: str, cache, *extra: str) -> GenTrainConfig:
    args = [f"--model.path={backbone}", f"--data.kind={kind}", f"--data.root={data['roots'][kind]}"]
    args += [f"--data.cache={cache}", "--gen.resolutions=[8,16,32]", *extra]
    return load_config(GenTrainConfig, args)


def generator(cfg: GenTrainConfig) -> Generator:
    torch.manual_seed(0)
    return Generator(cfg.gen, Backbone.from_pretrained(cfg.model.path))


@pytest.mark.parametrize("kind,vae", [("folder", False), ("webdataset", True), ("hf", False)])
def test_cached_samples_loss_and_gradients_equal_uncached(
    data, tiny_backbone_dir, tmp_path, kind, vae
):
    extra = ["--gen.vae.type=kl", f"--gen.vae.path={data['kl']}", *KL] if vae else []
    cfg = config(data, tiny_backbone_dir, kind, tmp_path / "cache", *extra)
    gen = generator(cfg)
    index = write_cache(cfg, gen, tmp_path / "cache", batch=4, per_shard=4)
    streamed = kind != "folder"
    assert index["records"] == N + streamed and index["bad"] == int(streamed)
    assert len(index["shards"]) == {"folder": 4, "webdataset": 3, "hf": 2}[kind]
    gen.train()
    plain, cached = GenData(cfg.data, 32, cfg.train.seed), CachedGenData(cfg, gen)
    for i in range(N + 4):  # into the second epoch (streams: reshuffled shards, the bad one)
        c, p = cached[i], plain[i]
        assert c.ids.tolist() == gen.encode_prompts([p.text]).input_ids[0].tolist(), i
        for k in range(3):
            z = gen.encode_latents(p.pixels[None], k)[0]
            torch.testing.assert_close(c.latents[k], z, rtol=1e-5, atol=1e-5)
    grads = []
    for source in (plain, cached):
        batch = source.batch(gen, [source[i] for i in range(5, 11)])
        losses = gen(*batch[:2], torch.Generator().manual_seed(7), *batch[2:])
        losses["loss"].backward()
        grads.append((losses, [p.grad.clone() for p in gen.queries.parameters()]))
        gen.zero_grad(set_to_none=True)
    (a, ga), (b, gb) = grads
    assert a.keys() == b.keys() and float(a["loss"]) > 0
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-6)


def test_train_from_the_cache_resumes_and_matches_uncached(data, tiny_backbone_dir, tmp_path):
    from tools.cache import main as build
    from tools.train_gen import main as train
    from unimodal import checkpoint

    common = ["--train.steps=3", "--train.batch_size=4", "--train.save_every=1"]
    common += [
        "--train.log_every=1",
        "--train.warmup_steps=1",
        "--sample.every=0",
        "--eval.n_per_category=0",
    ]
    cache = tmp_path / "cache"
    index = build(config(data, tiny_backbone_dir, "webdataset", cache, *common), batch=4)
    assert index["records"] == N + 1 and (cache / "index.json").is_file()

    def run(name: str, *extra: str) -> dict:
        cfg = config(data, tiny_backbone_dir, "webdataset", cache, *common, *extra)
        cfg.train.out_dir = str(tmp_path / name)
        train(cfg)
        return checkpoint.load_weights(checkpoint.latest(tmp_path / name), "trainable")

    losses: dict[str, list[float]] = {}
    uncached = run("uncached", "--data.cache=")
    run("cached", "--train.stop_at=1")
    cached = run("cached")  # resumed at step 1, reading the cache from position 4
    assert checkpoint.load_train_state(checkpoint.latest(tmp_path / "cached"))["position"] == 12
    for name in ("uncached", "cached"):  # the loss of every step, the resumed one included
        rows = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        losses[name] = [json.loads(row)["loss"] for row in rows]
    assert len(losses["cached"]) == 3
    assert losses["cached"] == pytest.approx(losses["uncached"], rel=1e-5)
    assert len(set(losses["cached"])) == 3  # they change: the steps trained
    for k in uncached:  # Adam scales the rounding noise of zero gradients (key biases) to ~lr
        torch.testing.assert_close(cached[k], uncached[k], rtol=0, atol=1e-3, msg=k)


def test_a_cache_built_for_something_else_is_refused(data, tiny_backbone_dir, tmp_path):
    from unimodal.presets import build_backbone

    cache = tmp_path / "cache"
    cfg = config(data, tiny_backbone_dir, "folder", cache)
    gen = generator(cfg)
    write_cache(cfg, gen, cache, batch=8)
    CachedGenData(cfg, gen)  # its own run reads it

    def refused(cfg, gen, match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            CachedGenData(cfg, gen)

    other = config(data, tiny_backbone_dir, "folder", cache, "--data.resize=pad")
    refused(other, gen, r"different data.resize \(center_crop there, pad here\)")
    other = config(data, tiny_backbone_dir, "folder", cache, "--gen.prompt_prefix=Draw: ")
    refused(other, generator(other), "different gen.prompt_prefix / tokenizer")
    other = config(data, build_backbone(tmp_path / "bb", "tiny_gen"), "folder", cache)
    refused(other, generator(other), r"different model \(")
    with pytest.raises(DataError, match="no index.json"):
        CachedGenData(config(data, tiny_backbone_dir, "folder", tmp_path / "none"), gen)
    gen.backbone.model.requires_grad_(True)
    refused(cfg, gen, "the backbone trains")
    with pytest.raises(ValueError, match="data.cache: the shapes world is procedural"):
        load_config(GenTrainConfig, [f"--data.cache={cache}"])
    with pytest.raises(ConfigError, match="editing runs"):
        config(data, tiny_backbone_dir, "folder", cache, "--gen.edit=true")


def test_the_tool_reports_a_refusal_in_one_line(data, tiny_backbone_dir, tmp_path, capsys):
    from tools.cache import main as build
    from unimodal.cli import run_tool

    cfg_args = [f"--model.path={tiny_backbone_dir}", "--data.kind=folder"]
    cfg_args += [f"--data.root={data['roots']['folder']}", "--gen.edit=true"]
    with pytest.raises(SystemExit) as e:
        run_tool(build, GenTrainConfig, [*cfg_args, f"--data.cache={tmp_path / 'c'}"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.count("\n") == 0
    assert err.startswith("error: data.cache: not possible here: editing runs")
    with pytest.raises(SystemExit):
        run_tool(build, GenTrainConfig, cfg_args[:3])  # no --data.cache: nowhere to write
    assert "name the folder to write" in capsys.readouterr().err
