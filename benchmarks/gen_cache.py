"""`bench.py gen-cache`: the `tools/train_gen.py` step with and without a precomputed cache.

Both variants run the whole step on the same fixed dataset, data included: the uncached one
reads and decodes images, tokenises the prompts and runs the backbone's prompt pass and the VAE
(`GenData`); the cached one reads the latents and the prompt keys / values from the cache
(`unimodal.gencache`) and runs only the queries over them. Then forward with losses, backward,
clipping and AdamW, identically. Without a data root (the shapes world), `--images` shapes-world
images are written to a temporary folder first. The cache build time is reported apart; the
first step's loss of both variants (same weights, same noise) is reported as a check.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks import common
from benchmarks.gen_train import load_cfg
from benchmarks.report import format_table, speedup


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="", help="a train_gen TOML (path or name in configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set data.kind=webdataset")  # fmt: skip
    p.add_argument("--batch", type=int, default=0, help="batch size (0: train.batch_size)")
    p.add_argument("--images", type=int, default=64, help="shapes images without a data root")
    p.add_argument("--steps", type=int, default=2, help="timed steps per variant and round")
    common.add_run_args(p)  # --rounds --warmup --device --threads --precision


def shapes_folder(cfg, n: int, root: Path) -> Path:
    """`n` shapes-world images with captions as an image folder (metadata.jsonl)."""
    from unimodal.gendata import GenData
    from unimodal.grid import to_pil

    data = GenData(cfg.data, max(cfg.gen.resolutions), cfg.train.seed)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "metadata.jsonl", "w") as f:
        for i in range(n):
            sample = data[i]
            to_pil(sample.pixels[None])[0].save(root / f"{i:05d}.png")
            f.write(json.dumps({"file_name": f"{i:05d}.png", "text": sample.text}) + "\n")
    return root


def build_unit(cfg, backbone, data, device: torch.device):
    """A fresh generator and its step over `data` (GenData or CachedGenData), in order, under
    the autocast of `train.mixed_precision` ('bf16' or 'no', set by `run`)."""
    from unimodal.gencache import to_device
    from unimodal.generator import Generator
    from unimodal.train import trainable

    torch.manual_seed(cfg.train.seed)
    gen = Generator(cfg.gen, backbone).to(device)
    gen.train()
    params = list(trainable(gen).values())
    tc = cfg.train
    opt = torch.optim.AdamW(params, lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay)
    state = {"position": 0}
    bf16 = tc.mixed_precision == "bf16"

    def inputs() -> tuple:
        b, at = tc.batch_size, state["position"]
        state["position"] += b
        return to_device(data.batch(gen, [data[at + j] for j in range(b)]), device)

    def step() -> None:
        batch = inputs()
        rng = torch.Generator(device=device).manual_seed(tc.seed + state["position"])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            losses = gen(*batch[:2], rng, *batch[2:])
        losses["loss"].backward()
        if tc.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(params, tc.clip_grad)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def first_loss() -> float:
        batch = to_device(data.batch(gen, [data[j] for j in range(tc.batch_size)]), device)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return float(gen(*batch[:2], torch.Generator(device=device).manual_seed(0), *batch[2:])["loss"])  # fmt: skip

    return gen, step, first_loss


def measure(args: argparse.Namespace, cfg, device: torch.device, tmp: Path) -> dict[str, Any]:
    """Build the cache, then time both variants interleaved; per-variant numbers and the ratio."""
    from unimodal.backbone import Backbone
    from unimodal.gencache import CachedGenData
    from unimodal.gencache_write import write_cache
    from unimodal.gendata import GenData
    from unimodal.presets import ensure_backbone

    if cfg.data.kind == "shapes":
        folder = shapes_folder(cfg, args.images, tmp / "images")
        cfg = replace(cfg, data=replace(cfg.data, kind="folder", root=str(folder)))
    cfg = replace(cfg, data=replace(cfg.data, cache=str(tmp / "cache")))
    backbone = Backbone.from_pretrained(ensure_backbone(cfg.model.path, cfg.model.preset))
    backbone = backbone.to(device)
    gen, _, _ = build_unit(cfg, backbone, None, device)
    index = write_cache(cfg, gen, Path(cfg.data.cache), batch=max(8, cfg.train.batch_size))
    size = max(cfg.gen.resolutions)
    sources = {
        "uncached": GenData(cfg.data, size, cfg.train.seed),
        "cached": CachedGenData(cfg, gen),
    }
    units, losses = {}, {}
    for name, data in sources.items():
        _, step, first_loss = build_unit(cfg, backbone, data, device)
        losses[name] = first_loss()
        units[name] = lambda step=step: [step() for _ in range(args.steps)]
    times = common.interleave(units, args.rounds, args.warmup, device)
    b = cfg.train.batch_size
    variants = {}
    for name in units:
        step_s = min(times[name]) / args.steps  # the best round: load only ever adds time
        variants[name] = {"step_s": step_s, "images_per_s": b / step_s, "round_s": times[name],
                          "step_s_median": statistics.median(times[name]) / args.steps}  # fmt: skip
    return {
        "data": {"kind": cfg.data.kind, "records": index["records"]},
        "cache": {
            "build_s": index["seconds"],
            "bytes": index["bytes"],
            "kib_per_record": index["bytes"] / 1024 / index["records"],
        },  # fmt: skip
        "variants": variants,
        "ratio": common.paired_ratio(times["uncached"], times["cached"]),
        "first_loss": losses,
        "first_loss_abs_diff": abs(losses["uncached"] - losses["cached"]),
        "mean_prompt_tokens": statistics.mean(
            sources["cached"][j].ids.shape[0] for j in range(cfg.train.batch_size)
        ),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = common.pick_device(args.device)
    threads = common.set_threads(args.threads, device)
    cfg = load_cfg(args)
    cfg.train.mixed_precision = "bf16" if common.use_bf16(args.precision, device) else "no"
    report: dict[str, Any] = {
        "mode": "gen-cache",
        "machine": common.machine(device),
        "threads": threads,
        "config": args.config or "gen_tiny",
        "overrides": args.set,
        "batch": cfg.train.batch_size,
        "precision": cfg.train.mixed_precision,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
    }
    with tempfile.TemporaryDirectory(prefix="bench-gen-cache-") as tmp:
        report.update(measure(args, cfg, device, Path(tmp)))
    report["peak_rss_mb"] = common.peak_rss_mb()
    return report


def table(report: dict[str, Any]) -> str:
    v = report["variants"]
    rows = [(name, x["images_per_s"], x["step_s"]) for name, x in v.items()]
    text = format_table(("gen-train step", "images/s", "step s"), rows)
    c = report["cache"]
    return (
        f"{text}\ncached vs uncached: {speedup(report['ratio'])}; cache built in "
        f"{c['build_s']:.1f} s, {c['kib_per_record']:.1f} KiB per record; "
        f"first-step loss difference {report['first_loss_abs_diff']:.2e}"
    )
