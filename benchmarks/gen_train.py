"""`bench.py gen-train`: throughput, peak memory and MFU of the generation training step.

The step is the one in `tools/train_gen.py` (forward with losses, backward, clipping, AdamW,
EMA) on pre-rendered batches of the configured data, so data rendering is not timed. Variants:
the optimised step (options below, each switchable), and with `--baseline` the plain one (fp32,
eager, no prefix cache, unfused AdamW) in the same process; `--ablate` adds each optimisation
alone on top of the baseline. FLOPs are counted once per variant with `FlopCounterMode`.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from benchmarks import common
from benchmarks.report import format_table, parse_sweep, run_sweep, speedup, sweep_line

SWEEP_KEYS = ("batch", "resolution", "prompt_len")


@dataclass(frozen=True)
class Options:
    """One switchable set of training-step optimisations."""

    prefix_cache: bool = True  # prompt once without gradient; queries reuse its KV cache
    fused_adamw: bool = True  # one fused AdamW kernel instead of per-tensor loops
    compile: bool = False  # torch.compile of the decoder and the connector
    precision: str = "bf16"  # bf16 autocast | fp32

    def differs(self, other: Options) -> list[str]:
        return [k for k, v in asdict(self).items() if getattr(other, k) != v]


BASELINE = Options(prefix_cache=False, fused_adamw=False, compile=False, precision="fp32")


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="", help="a train_gen TOML (path or name in configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set gen.decoder.num_layers=12")  # fmt: skip
    p.add_argument("--batch", type=int, default=0, help="batch size (0: train.batch_size)")
    p.add_argument("--steps", type=int, default=2, help="timed steps per variant and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per variant")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="0: 1 on CPU, default on GPU")
    p.add_argument("--prefix-cache", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--fused-adamw", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="auto: bf16 autocast on GPU, fp32 on CPU")  # fmt: skip
    p.add_argument("--baseline", action="store_true", help="also run fp32 / eager / no caching")
    p.add_argument("--ablate", action="store_true", help="also each optimisation alone")
    p.add_argument("--no-flops", dest="flops", action="store_false")
    p.add_argument("--sweep", help=f"KEY=V1,V2,... with KEY in {SWEEP_KEYS}")
    p.add_argument("--plot", type=Path, help="sweep plot PNG (default runs/bench/...)")


def load_cfg(args: argparse.Namespace, sweep: tuple[str, int] | None = None):
    """The train_gen config (default `configs/gen_tiny.toml`) with overrides, batch and the
    swept value applied."""
    from unimodal.config import load_config
    from unimodal.train.gen_config import GenTrainConfig

    argv = (["--config", args.config] if args.config else []) + [f"--{s}" for s in args.set]
    cfg = load_config(GenTrainConfig, argv)
    if args.batch:
        cfg.train.batch_size = args.batch
    if sweep and sweep[0] == "batch":
        cfg.train.batch_size = sweep[1]
    if sweep and sweep[0] == "resolution":
        n = len(cfg.gen.resolutions)
        cfg.gen.resolutions = tuple(sweep[1] >> (n - 1 - i) for i in range(n))
        cfg.gen.decoder.sample_size = max(cfg.gen.decoder.sample_size, sweep[1])
    return cfg


def variants(args: argparse.Namespace, device: torch.device) -> dict[str, Options]:
    precision = args.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    best = Options(args.prefix_cache, args.fused_adamw, args.compile, precision)
    out = {"optimised": best}
    if args.baseline or args.ablate:
        out["baseline"] = BASELINE
    if args.ablate:
        for key in best.differs(BASELINE):
            out[f"only {key}"] = replace(BASELINE, **{key: getattr(best, key)})
    return out


def make_batches(gen, cfg, n: int, prompt_len: int, device: torch.device) -> list[tuple]:
    from unimodal.gendata import GenData, batch_inputs

    data = GenData(cfg.data, max(cfg.gen.resolutions), cfg.train.seed)
    b = cfg.train.batch_size
    out = []
    for i in range(n):
        samples = [data[i * b + j] for j in range(b)]
        for s in samples:  # longer prompts for the sequence-length sweep
            s.text = " ".join([s.text] + ["with care"] * max(0, prompt_len // 2))
        prompt, pixels, ref = batch_inputs(gen, samples)
        out.append((prompt.to(device), pixels.to(device), None if ref is None else ref.to(device)))
    return out


def build_unit(cfg, backbone, opts: Options, device: torch.device, batches: list[tuple]):
    """A closure that runs one training step of a fresh generator with options `opts`."""
    from unimodal.generator import Generator
    from unimodal.train import EMA, trainable

    torch.manual_seed(cfg.train.seed)
    gen = Generator(replace(cfg.gen, prefix_cache=opts.prefix_cache), backbone).to(device)
    gen.train()
    named = trainable(gen)
    params = list(named.values())
    tc = cfg.train
    fused = {"fused": True} if opts.fused_adamw else {"foreach": False}
    opt = torch.optim.AdamW(params, lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay, **fused)
    ema = EMA(named, tc.ema_decay) if tc.ema_decay > 0 else None
    rng = torch.Generator(device=device).manual_seed(tc.seed)
    bf16 = opts.precision == "bf16"
    state = {"i": 0}

    def step() -> None:
        prompt, pixels, ref = batches[state["i"] % len(batches)]
        state["i"] += 1
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            losses = gen(prompt, pixels, rng, ref)
        losses["loss"].backward()
        if tc.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(params, tc.clip_grad)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(named)

    return gen, step


def compare(args: argparse.Namespace, cfg, device: torch.device, prompt_len: int) -> dict:
    """Time every variant on one config; returns per-variant numbers and ratios."""
    from unimodal.backbone import Backbone
    from unimodal.presets import ensure_backbone

    backbone = Backbone.from_pretrained(ensure_backbone(cfg.model.path, cfg.model.preset))
    backbone = backbone.to(device)
    opts = variants(args, device)
    units, flops, batches = {}, {}, []  # the batches are rendered once, for all variants
    for name, o in opts.items():
        gen, step = build_unit(cfg, backbone, o, device, batches)
        if not batches:
            batches += make_batches(gen, cfg, 2, prompt_len, device)
        if args.flops:  # backward FLOPs cannot be told apart by module: forward only for those
            flops[name] = common.count_flops(step)
            flops[name]["forward_by_module"] = common.count_flops(
                lambda gen=gen, b=batches[0]: gen(b[0], b[1], None, b[2])
            )["by_module"]
        if o.compile:
            gen.decoder.compile(dynamic=False)  # one graph per resolution
            gen.connector.compile(dynamic=False)
        units[name] = lambda step=step: [step() for _ in range(args.steps)]
    peaks: dict[str, float | None] = {}
    times = common.interleave(units, args.rounds, args.warmup, device, peaks)
    b = cfg.train.batch_size
    peak = common.peak_flops(device)
    out: dict[str, Any] = {"variants": {}, "ratios": {}}
    for name, o in opts.items():
        step_s = min(times[name]) / args.steps  # the best round: load only ever adds time
        f = flops.get(name, {}).get("total")
        out["variants"][name] = {
            "options": asdict(o),
            "images_per_s": b / step_s,
            "step_s": step_s,
            "step_s_median": statistics.median(times[name]) / args.steps,
            "round_s": times[name],
            "peak_memory_mb": peaks.get(name),
            "flops_per_step": f,
            "forward_flops_by_module": flops.get(name, {}).get("forward_by_module"),
            "achieved_tflops": f / step_s / 1e12 if f else None,
            "mfu": f / step_s / peak if f and peak else None,
        }
        if "baseline" in opts and name != "baseline":
            out["ratios"][name] = common.paired_ratio(times["baseline"], times[name])
    out["mean_prompt_tokens"] = float(batches[0][0].attention_mask.sum(1).float().mean())
    out["query_tokens"] = gen.queries.num_tokens
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = common.pick_device(args.device)
    common.set_threads(args.threads, device)
    sweep = parse_sweep(args.sweep, SWEEP_KEYS)
    cfg = load_cfg(args)
    report: dict[str, Any] = {
        "mode": "gen-train",
        "machine": common.machine(device),
        "config": args.config or "gen_tiny",
        "overrides": args.set,
        "batch": cfg.train.batch_size,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "mfu_note": "MFU = counted FLOPs of the variant's step / time / dense bf16 peak",
    }
    report.update(compare(args, cfg, device, prompt_len=0))
    if sweep:
        key = sweep[0]

        def measure(v: int) -> dict:
            return compare(args, load_cfg(args, (key, v)), device, v if key == "prompt_len" else 0)

        run_sweep(report, "gen-train", sweep, measure, args.plot)
    report["peak_rss_mb"] = common.peak_rss_mb()
    return report


def table(report: dict[str, Any]) -> str:
    rows = []
    for name, v in report["variants"].items():
        ratio = report["ratios"].get(name, {})
        mem = v["peak_memory_mb"]
        rows.append((name, v["images_per_s"], speedup(ratio),
                     v["achieved_tflops"], v["mfu"], mem))  # fmt: skip
    head = ("gen-train variant", "images/s", "vs baseline", "TFLOP/s", "MFU", "peak MiB")
    text = format_table(head, rows) + sweep_line(report)
    return (
        text + f"\ndevice: {report['machine']['device']}; peak RSS {report['peak_rss_mb']:.0f} MiB"
    )
