"""`bench.py sample`: latency and images/s of text-to-image and editing (`Generator.generate`).

The generator is freshly initialised from the config (speed does not depend on training). The
optimised path is the shipped one: one backbone pass per batch (conditions reused for every
step), guidance branches stacked into one decoder call per step, bf16 autocast on GPU and
optionally a compiled decoder. `--baseline` runs an emulated naive sampler in the same process:
fp32, eager, one decoder call per guidance branch, and the prompt re-encoded at every step.
The call counts of the optimised path are recorded with hooks and reported.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from benchmarks import common
from benchmarks.gen_train import load_cfg
from benchmarks.report import format_table, parse_sweep, run_sweep, speedup, sweep_line

SWEEP_KEYS = ("batch", "resolution", "steps")


@dataclass(frozen=True)
class Options:
    batched_cfg: bool = True  # guidance branches in one decoder call
    cached_conditions: bool = True  # backbone + connector once per batch, not once per step
    compile: bool = False  # torch.compile of the decoder
    precision: str = "bf16"  # bf16 autocast | fp32


BASELINE = Options(batched_cfg=False, cached_conditions=False, compile=False, precision="fp32")


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="", help="a train_gen TOML (path or name in configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=20, help="sampling steps")
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--image-guidance", type=float, default=1.5)
    p.add_argument("--size", type=int, default=0, help="output pixels (0: the largest scale)")
    p.add_argument("--edit", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="0: 1 on CPU, default on GPU")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    p.add_argument("--baseline", action="store_true", help="also the emulated naive sampler")
    p.add_argument("--ablate", action="store_true", help="also each optimisation alone")
    p.add_argument("--sweep", help=f"KEY=V1,V2,... with KEY in {SWEEP_KEYS}")
    p.add_argument("--plot", type=Path)


def naive(gen, prompt, opts: Options, batch: int) -> None:
    """Make `gen.decoder` behave like the baseline: branches one by one, prompt re-encoded."""
    decoder = gen.decoder
    original = decoder.forward

    def forward(x, sigma, cond, ref=None):
        if not opts.cached_conditions:
            gen.conditions(gen.query_states(prompt))  # the per-step re-encoding, discarded
        if opts.batched_cfg:
            return original(x, sigma, cond, ref=ref)
        parts = [
            original(
                x[i : i + batch],
                sigma[i : i + batch],
                cond[i : i + batch],
                ref=None if ref is None else ref[i : i + batch],
            )[0]  # fmt: skip
            for i in range(0, x.shape[0], batch)
        ]
        return torch.cat(parts), None

    decoder.forward = forward


def count_calls(gen, call) -> dict[str, Any]:
    """Backbone passes, decoder calls and decoder batch sizes during one `call()`."""
    seen: dict[str, list[int]] = {"backbone": [], "decoder": []}
    hooks = [
        gen.backbone.model.model.register_forward_pre_hook(
            lambda m, a, k: seen["backbone"].append(1), with_kwargs=True
        ),
        gen.decoder.register_forward_pre_hook(lambda m, a: seen["decoder"].append(a[0].shape[0])),
    ]
    try:
        call()
    finally:
        for h in hooks:
            h.remove()
    return {
        "backbone_passes": len(seen["backbone"]),
        "decoder_calls": len(seen["decoder"]),
        "decoder_batch": sorted(set(seen["decoder"])),
    }


def variants(args: argparse.Namespace, device: torch.device) -> dict[str, Options]:
    """The optimised path, plus the baseline and each optimisation alone when asked for."""
    precision = args.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    best = Options(compile=args.compile, precision=precision)
    opts = {"optimised": best}
    if args.baseline or args.ablate:
        opts["baseline"] = BASELINE
    if args.ablate:
        for key, value in asdict(best).items():
            if getattr(BASELINE, key) != value:
                opts[f"only {key}"] = replace(BASELINE, **{key: value})
    return opts


def tasks(args: argparse.Namespace, cfg, size: int, device: torch.device) -> dict[str, tuple]:
    """task -> (edit, prompts, source images, stacked reference images) for `args.batch` items."""
    from unimodal.data import edit_sample, render, to_pixels
    from unimodal.gendata import GenData

    b, seed = args.batch, cfg.train.seed
    data = GenData(cfg.data, size, seed)
    texts = [data[i].text for i in range(b)]
    sources = [render(edit_sample(seed, i).source, size) for i in range(b)]
    edits = [edit_sample(seed, i).instruction for i in range(b)]
    ref = torch.stack([to_pixels(im) for im in sources]).to(device)
    out = {"t2i": (False, texts, None, None)}
    if args.edit:
        out["edit"] = (True, edits, [[im] for im in sources], ref)
    return out


def summarise(
    times: dict[str, list[float]],
    peaks: dict[str, float | None],
    calls: dict[str, dict],
    opts: dict[str, Options],
    batch: int,
) -> dict[str, Any]:
    """Latency, images/s, memory and call counts per unit; ratios against each task's baseline."""
    out: dict[str, Any] = {"variants": {}, "ratios": {}, "options": {}}
    for name, o in opts.items():
        out["options"][name] = asdict(o)
    for unit, t in times.items():
        latency = min(t)  # the best round: load only ever adds time
        out["variants"][unit] = {
            "latency_s": latency,
            "latency_s_median": statistics.median(t),
            "images_per_s": batch / latency,
            "round_s": t,
            "peak_memory_mb": peaks.get(unit),
            "calls": calls[unit],
        }
        task, name = unit.split(" ", 1)
        if name != "baseline" and f"{task} baseline" in times:
            out["ratios"][unit] = common.paired_ratio(times[f"{task} baseline"], t)
    return out


def compare(args: argparse.Namespace, cfg, device: torch.device, steps: int, size: int) -> dict:
    """Time every variant on every task (t2i, edit) at output `size`, interleaved."""
    from unimodal.backbone import Backbone
    from unimodal.generator import Generator
    from unimodal.presets import ensure_backbone

    backbone = Backbone.from_pretrained(ensure_backbone(cfg.model.path, cfg.model.preset))
    backbone = backbone.to(device)
    opts = variants(args, device)
    k = cfg.gen.resolutions.index(size) if size in cfg.gen.resolutions else -1
    b = args.batch
    work = tasks(args, cfg, cfg.gen.resolutions[k], device)
    units, calls = {}, {}
    for name, o in opts.items():
        for task, (edit, prompts, images, r) in work.items():
            torch.manual_seed(cfg.train.seed)
            gen = Generator(replace(cfg.gen, edit=edit), backbone).to(device).eval()
            prompt = gen.encode_prompts(prompts, images).to(device)
            naive(gen, prompt, o, b)
            if o.compile:
                gen.decoder.compile(dynamic=False)  # one graph per resolution
            kw = dict(steps=steps, guidance=args.guidance, scale_index=k, images=images, ref=r)
            if edit:
                kw["image_guidance"] = args.image_guidance

            def call(gen=gen, prompts=prompts, kw=kw, bf16=o.precision == "bf16") -> None:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    gen.generate(prompts, **kw)

            units[f"{task} {name}"] = call
            call()  # steady state: one-time caches (the empty prompt's query states) are warm
            calls[f"{task} {name}"] = count_calls(gen, call)
    peaks: dict[str, float | None] = {}
    times = common.interleave(units, args.rounds, args.warmup, device, peaks)
    return summarise(times, peaks, calls, opts, b)


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = common.pick_device(args.device)
    common.set_threads(args.threads, device)
    sweep = parse_sweep(args.sweep, SWEEP_KEYS)

    def point(key: str | None = None, v: int = 0) -> dict:
        cfg = load_cfg(args, (key, v) if key == "resolution" else None)
        if args.size and key != "resolution":
            cfg = load_cfg(args, ("resolution", args.size))
        if key == "batch":
            args.batch = v
        steps = v if key == "steps" else args.steps
        return compare(args, cfg, device, steps, max(cfg.gen.resolutions))

    batch = args.batch
    report: dict[str, Any] = {"mode": "sample", "machine": common.machine(device)}
    report.update(config=args.config or "gen_tiny", overrides=args.set, batch=batch)
    report.update(steps=args.steps, guidance=args.guidance, rounds=args.rounds)
    report.update(point())
    if sweep:
        run_sweep(report, "sample", sweep, lambda v: point(sweep[0], v), args.plot)
        args.batch = batch
    report["peak_rss_mb"] = common.peak_rss_mb()
    return report


def table(report: dict[str, Any]) -> str:
    rows = []
    for name, v in report["variants"].items():
        ratio = report["ratios"].get(name, {})
        c = v["calls"]
        rows.append((name, v["latency_s"], v["images_per_s"], speedup(ratio),
                     f"{c['backbone_passes']} / {c['decoder_calls']}", v["peak_memory_mb"]))  # fmt: skip
    head = ("sample", "latency s", "images/s", "vs baseline", "backbone/decoder calls", "peak MiB")
    text = format_table(head, rows) + sweep_line(report)
    return (
        text + f"\nbatch {report['batch']}, {report['steps']} steps, guidance {report['guidance']}"
    )
