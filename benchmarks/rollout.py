"""`bench.py rollout`: generated tokens/s of RL sampling from the backbone, ours against plain
`transformers` `model.generate`, same prompts, same `max_new_tokens`, sampling on.

Variants per batch size: `ours` (`unimodal.sampling.sample`, finished rows dropped from the batch
and the KV cache), `ours, no compaction` (finished rows kept and masked), with `--static` `ours,
static cache` (preallocated cache, re-packed in powers of two) and with `--compile` `ours, static
+ compile` (its decode step compiled; CUDA graphs on a GPU), and `hf generate` (`do_sample=True`,
`top_k=0`, same EOS and pad ids). A random backbone rarely samples EOS, so
`--eos-rate` adds a bias to the EOS logit that ends about that fraction of rows per step, which
gives the spread of lengths real rollouts have (0: no bias). Tokens are counted up to and
including each row's EOS.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path
from typing import Any

import torch

from benchmarks import common
from benchmarks.report import format_table, parse_sweep, run_sweep, speedup

SWEEP_KEYS = ("batch", "new_tokens", "prompt_len")


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="", help="a local HF folder (default: the preset)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batches", default="", help="batch sizes (default 8,64,256 GPU; 4,16 CPU)")
    p.add_argument("--max-new-tokens", type=int, default=0, help="0: 256 on GPU, 32 on CPU")
    p.add_argument("--prompt-len", type=int, default=32, help="approximate prompt tokens")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--eos-rate", type=float, default=0.03)
    common.add_run_args(p)
    p.add_argument("--static", action="store_true", help="add the static-cache variant")
    p.add_argument("--compile", action="store_true", help="add the static + compiled variant")
    p.add_argument("--no-hf", dest="hf", action="store_false", help="skip model.generate")
    p.add_argument("--sweep", help=f"KEY=V1,V2,... with KEY in {SWEEP_KEYS}")
    p.add_argument("--plot", type=Path)


def bias_eos(backbone, rate: float, prompt) -> None:
    """Give the LM head a bias on the EOS logit so that P(EOS) is about `rate` per step."""
    eos = backbone.eos_token_ids[0]
    lin = common.add_logit_bias(backbone.model)
    with torch.no_grad():
        logits = lin(backbone.run(prompt).last_hidden_state[:, -1]).float()  # (B, V)
        others = torch.cat([logits[:, :eos], logits[:, eos + 1 :]], 1).logsumexp(-1)
        lin.bias[eos] = float((others - logits[:, eos]).mean()) + math.log(rate / (1 - rate))


def prompts(n: int, length: int) -> list[str]:
    words = "sort the list then return the sum of the even values in it".split()
    return [" ".join(words[(i + j) % len(words)] for j in range(length)) + f" #{i}" for i in range(n)]  # fmt: skip


def completion_tokens(ids: torch.Tensor, eos: list[int]) -> int:
    """Tokens up to and including each row's first EOS, all T where there is none (B, T)."""
    is_eos = torch.isin(ids, torch.tensor(eos, device=ids.device))  # (B, T)
    first = is_eos.int().argmax(1) + 1  # (B,)
    return int(torch.where(is_eos.any(1), first, ids.shape[1]).sum())


def compare(args, backbone, device: torch.device, batch: int, new: int, plen: int) -> dict:
    from unimodal.sampling import sample

    prompt = backbone.encode(prompts(batch, plen)).to(device)
    eos, pad = backbone.eos_token_ids, backbone.tokenizer.pad_token_id
    bf16 = common.use_bf16(args.precision, device)
    made: dict[str, list[int]] = {}  # tokens per call, per variant

    def ours(name: str, **kw: bool):
        def call() -> None:
            n = len(made.setdefault(name, []))  # the same seeds, call by call, for all
            g = torch.Generator(device=device).manual_seed(n)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = sample(backbone, prompt, new, args.temperature, args.top_p, g, **kw)
            made[name].append(int(out.completion_mask.sum()))

        return call

    def hf() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = backbone.model.generate(
                input_ids=prompt.input_ids, attention_mask=prompt.attention_mask,
                do_sample=True, temperature=args.temperature, top_p=args.top_p, top_k=0,
                max_new_tokens=new, eos_token_id=eos, pad_token_id=pad,
            )  # fmt: skip
        made.setdefault("hf generate", []).append(
            completion_tokens(out[:, prompt.input_ids.shape[1] :], eos)
        )

    units = {"ours": ours("ours"), "ours, no compaction": ours("ours, no compaction", compact=False)}  # fmt: skip
    if args.static:
        units["ours, static cache"] = ours("ours, static cache", static=True)
    if args.compile:
        units["ours, static + compile"] = ours("ours, static + compile", compile=True)
    if args.hf:
        units["hf generate"] = hf
    peaks: dict[str, float | None] = {}
    times = common.interleave(units, args.rounds, args.warmup, device, peaks)
    res: dict[str, Any] = {"batch": batch, "max_new_tokens": new, "variants": {}, "ratios": {}}
    res["prompt_tokens"] = int(prompt.input_ids.shape[1])
    per_token = {n: [t / k for t, k in zip(ts, made[n][-len(ts) :])] for n, ts in times.items()}
    for name, t in times.items():
        tokens = made[name][-len(t) :]
        res["variants"][name] = {
            "tokens": tokens,  # per timed call (lengths vary with the seed)
            "tokens_per_s": 1 / min(per_token[name]),  # the best round
            "tokens_per_s_median": 1 / statistics.median(per_token[name]),
            "row_steps_per_s": batch * new / min(t),  # as if every row ran to the end
            "call_s": min(t),
            "round_s": t,
            "peak_memory_mb": peaks.get(name),
        }
    pairs = [("ours", "ours, no compaction")]  # paired over rounds, s per generated token
    if "hf generate" in times:
        pairs += [(n, "hf generate") for n in times if n != "hf generate"]
    for fast, base in pairs:
        res["ratios"][f"{fast} vs {base}"] = common.paired_ratio(per_token[base], per_token[fast])
    return res


def run(args: argparse.Namespace) -> dict[str, Any]:
    from unimodal.backbone import Backbone
    from unimodal.presets import ensure_backbone

    device = common.pick_device(args.device)
    common.set_threads(args.threads, device)
    gpu = device.type == "cuda"
    batches = [int(b) for b in (args.batches or ("8,64,256" if gpu else "4,16")).split(",")]
    new = args.max_new_tokens or (256 if gpu else 32)
    backbone = Backbone.from_pretrained(ensure_backbone(args.model, args.preset)).freeze()
    backbone = backbone.to(device)
    if args.eos_rate > 0:
        bias_eos(backbone, args.eos_rate, backbone.encode(prompts(8, args.prompt_len)).to(device))
    report: dict[str, Any] = {"mode": "rollout", "machine": common.machine(device)}
    report.update(model=args.model or f"preset {args.preset}", eos_rate=args.eos_rate)
    report.update(temperature=args.temperature, top_p=args.top_p, rounds=args.rounds)
    report["points"] = [compare(args, backbone, device, b, new, args.prompt_len) for b in batches]
    sweep = parse_sweep(args.sweep, SWEEP_KEYS)
    if sweep:
        key = sweep[0]

        def measure(v: int) -> dict[str, Any]:
            b = v if key == "batch" else batches[-1]
            n = v if key == "new_tokens" else new
            return compare(args, backbone, device, b, n, v if key == "prompt_len" else args.prompt_len)  # fmt: skip

        run_sweep(report, "rollout", sweep, measure, args.plot, "tokens_per_s", "generated tokens / s")  # fmt: skip
    return report


def table(report: dict[str, Any]) -> str:
    rows = []
    for p in report["points"]:
        for name, v in p["variants"].items():
            ratio = p["ratios"].get(f"{name} vs hf generate", {})
            rows.append((p["batch"], name, sum(v["tokens"]), v["tokens_per_s"],
                         speedup(ratio), v["peak_memory_mb"]))  # fmt: skip
    head = ("batch", "rollout", "tokens", "tokens/s", "faster than hf generate by", "peak MiB")
    return format_table(head, rows) + f"\nEOS rate per step {report['eos_rate']}"
