"""The proof's `speed` section: the four same-process comparisons of `tools/bench.py`, each run
through its own mode (`benchmarks.gen_train`, `.sample`, `.rollout`, `.grpo_trl`) at GPU sizes,
or at tiny sizes with bf16 autocast on a CPU for `--mini`, and boiled down to the numbers the
targets name: ours, the baseline, the ratio (best rounds; the paired median beside it), the
target, and peak memory (device peak per variant on a GPU, the process's peak RSS everywhere).

Targets (H100 / H200): generation training >= 3x the naive step and decoder MFU >= 40%;
sampling >= 3x the naive sampler; rollouts at batch 64 with static cache + compiled decode >= 3x
HF `generate`; one GRPO step >= 1.5x TRL's `GRPOTrainer`. `met` is left null off a GPU: CPU
numbers rehearse the code paths, they do not test the targets.

`--mini` leaves out one thing that is not a GPU-only switch: compiling the generation training
step (a CPU inductor build of its three-scale decoder takes minutes on 2 cores); `torch.compile`
in its CPU mode is rehearsed by the compiled decode step of the rollout comparison instead.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

TARGETS = {"gen_train": 3.0, "sample": 3.0, "rollout": 3.0, "grpo": 1.5}
MFU_TARGET = 0.40
COMPILE_SKIPPED = "skipped in --mini: a CPU build of the compiled training step takes minutes"

# Rollouts run with no EOS bias (`--eos-rate 0`): every row decodes all `max_new_tokens` on both
# sides, so they do the same work, and the compiled step sees one batch size (the static cache
# re-packs, and so recompiles, only when rows finish; each build costs seconds on a GPU and tens
# of seconds on a CPU).
GPU_ARGS = {
    "gen_train": ["--config", "bench_gen_gpu", "--baseline", "--compile", "--steps", "3",
                  "--rounds", "3", "--warmup", "2", "--precision", "bf16"],
    "sample": ["--config", "bench_gen_gpu", "--baseline", "--no-edit", "--batch", "64",
               "--steps", "30", "--rounds", "3", "--warmup", "1", "--precision", "bf16"],
    "rollout": ["--preset", "small", "--batches", "64", "--max-new-tokens", "128", "--static",
                "--compile", "--rounds", "2", "--warmup", "1", "--precision", "bf16",
                "--eos-rate", "0"],
    "grpo": ["--preset", "small", "--prompts", "8", "--group", "8", "--max-new-tokens", "64",
             "--rounds", "3", "--warmup", "1", "--precision", "bf16"],
}  # fmt: skip
TINY = ["--config", "bench_gen_cpu", "--set", "model.preset=tiny"]
MINI_ARGS = {
    "gen_train": [*TINY, "--baseline", "--no-compile", "--batch", "4", "--steps", "1",
                  "--rounds", "1", "--warmup", "1", "--precision", "bf16"],
    "sample": [*TINY, "--baseline", "--no-edit", "--batch", "2", "--steps", "3", "--rounds", "1",
               "--warmup", "0", "--precision", "bf16"],
    "rollout": ["--preset", "tiny", "--batches", "4", "--max-new-tokens", "8", "--static",
                "--compile", "--rounds", "1", "--warmup", "1", "--precision", "bf16",
                "--eos-rate", "0"],
    "grpo": ["--preset", "tiny", "--prompts", "2", "--group", "2", "--max-new-tokens", "4",
             "--rounds", "1", "--warmup", "1", "--precision", "bf16"],
}  # fmt: skip
MODULES = {"gen_train": "gen_train", "sample": "sample", "rollout": "rollout", "grpo": "grpo_trl"}


def bench(part: str, argv: list[str]) -> dict[str, Any]:
    """Run the bench mode of `part` on `argv` (its own parser), threads restored afterwards."""
    import torch

    module = importlib.import_module(f"benchmarks.{MODULES[part]}")
    parser = argparse.ArgumentParser(prog=part)
    module.add_args(parser)
    threads = torch.get_num_threads()
    try:
        return module.run(parser.parse_args(argv))
    finally:
        torch.set_num_threads(threads)


def bench_compiled(part: str, argv: list[str]) -> tuple[dict[str, Any], Any]:
    """`bench`, and True; if it fails with `--compile`, the same run eager and why compiling
    failed (a compile failure costs the compiled variant, not the comparison)."""
    try:
        return bench(part, argv), "--compile" in argv
    except Exception as e:
        if "--compile" not in argv:
            raise
        why = f"failed, measured eager: {type(e).__name__}: {str(e)[:300]}"
        return bench(part, [a for a in argv if a != "--compile"]), why


def _ratio(r: dict[str, float] | None, target: float, gpu: bool) -> dict[str, Any]:
    best = r["best"] if r else None
    met = None if best is None or not gpu else best >= target
    return {"speedup": best, "speedup_median": r["median"] if r else None,
            "target": target, "met": met}  # fmt: skip


def gen_train(mini: bool) -> dict[str, Any]:
    from benchmarks import common
    from benchmarks.proof import switches

    device = common.pick_device()
    argv = list(MINI_ARGS["gen_train"] if mini else GPU_ARGS["gen_train"])
    fused = switches.on(switches.check_all(device), "fused_adamw")
    argv.append("--fused-adamw" if fused else "--no-fused-adamw")
    r, compile_note = bench_compiled("gen_train", argv)
    compile_note = COMPILE_SKIPPED if mini else compile_note
    gpu = device.type == "cuda"
    out: dict[str, Any] = {"config": r["config"], "batch": r["batch"], "compile": compile_note}
    out["fused_adamw"] = fused
    for name in ("optimised", "baseline"):
        v = r["variants"][name]
        decoder = (v["forward_flops_by_module"] or {}).get("decoder")
        out[name] = {
            "images_per_s": v["images_per_s"],
            "step_s": v["step_s"],
            "tflops": v["achieved_tflops"],
            # decoder FLOPs of a training step: 3 x its counted forward (backward ~ 2 forwards)
            "decoder_tflops": 3 * decoder / v["step_s"] / 1e12 if decoder else None,
            "peak_memory_mb": v["peak_memory_mb"],
        }
    out |= _ratio(r["ratios"].get("optimised"), TARGETS["gen_train"], gpu)
    out["mfu_target"] = MFU_TARGET
    out["process_peak_rss_mb"] = r["peak_rss_mb"]
    return out


def add_mfu(result: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """MFU of each gen-train variant against the measured roofline (env) and the datasheet."""
    roof, sheet = env.get("matmul_bf16_tflops"), env.get("datasheet_bf16_tflops")
    for name in ("optimised", "baseline"):
        v = result.get(name)
        if not isinstance(v, dict):
            continue
        for key, tf in (("mfu", v.get("tflops")), ("decoder_mfu", v.get("decoder_tflops"))):
            v[key] = tf / roof if tf and roof else None
            v[f"{key}_datasheet"] = tf / sheet if tf and sheet else None
    opt = result.get("optimised", {})
    if env.get("device") == "cuda" and opt.get("decoder_mfu") is not None:
        result["mfu_met"] = opt["decoder_mfu"] >= MFU_TARGET
    return result


def sample(mini: bool) -> dict[str, Any]:
    from benchmarks import common

    r = bench("sample", MINI_ARGS["sample"] if mini else GPU_ARGS["sample"])
    gpu = r["machine"]["device_type"] == "cuda"
    out: dict[str, Any] = {"batch": r["batch"], "steps": r["steps"], "guidance": r["guidance"]}
    for name in ("optimised", "baseline"):
        v = r["variants"][f"t2i {name}"]
        out[name] = {k: v[k] for k in ("images_per_s", "latency_s", "peak_memory_mb")}
        out[name]["backbone_passes"] = v["calls"]["backbone_passes"]
    out |= _ratio(r["ratios"].get("t2i optimised"), TARGETS["sample"], gpu)
    out["process_peak_rss_mb"] = common.peak_rss_mb()
    return out


def rollout(mini: bool) -> dict[str, Any]:
    from benchmarks import common

    r, compiled = bench_compiled("rollout", MINI_ARGS["rollout"] if mini else GPU_ARGS["rollout"])
    gpu = r["machine"]["device_type"] == "cuda"
    p = r["points"][0]
    ours = "ours, static + compile" if compiled is True else "ours, static cache"
    out: dict[str, Any] = {"batch": p["batch"], "max_new_tokens": p["max_new_tokens"]}
    out |= {"ours_variant": ours, "compile": compiled}
    out["variants"] = {
        name: {k: v[k] for k in ("tokens_per_s", "call_s", "peak_memory_mb")}
        for name, v in p["variants"].items()
    }
    out["ours"] = out["variants"][ours]
    out["hf_generate"] = out["variants"]["hf generate"]
    out |= _ratio(p["ratios"].get(f"{ours} vs hf generate"), TARGETS["rollout"], gpu)
    out["process_peak_rss_mb"] = common.peak_rss_mb()
    return out


def grpo(mini: bool) -> dict[str, Any]:
    from benchmarks import common

    r = bench("grpo", MINI_ARGS["grpo"] if mini else GPU_ARGS["grpo"])
    if "skipped" in r:
        return {"status": "skipped", "why": r["skipped"]}
    gpu = r["machine"]["device_type"] == "cuda"
    out: dict[str, Any] = {"trl_version": r["trl"], "work": r["work"], "memory": r["memory"]}
    for name in ("ours", "trl"):
        v = r["variants"][name]
        out[name] = {k: v[k] for k in ("step_s", "tokens_per_s", "peak_memory_mb")}
    out |= _ratio(r["ratio_trl_over_ours"], TARGETS["grpo"], gpu)
    out["process_peak_rss_mb"] = common.peak_rss_mb()
    return out


PARTS = {"gen_train": gen_train, "sample": sample, "rollout": rollout, "grpo": grpo}
