"""What a complete proof.json holds: every section, and every number the issue asks for.

`NUMBERS` lists dotted paths into proof.json; those marked GPU-only (device peak memory, the
datasheet roofline) are null on a CPU by design. `missing` is what the CPU test and proof.md
check: a path whose value is not a number, or a job whose status is not "ok".
"""

from __future__ import annotations

from typing import Any

SECTIONS = ("proof", "env", "speed", "learning", "report")
JOBS = (
    *("env", "speed.gen_train", "speed.sample", "speed.rollout", "speed.grpo"),
    *("learning.mllm", "learning.gen", "learning.azr", "learning.rm_sft", "learning.rm_rl"),
)
GPU_ONLY = True


def _speed(part: str, ours: str, base: str, key: str, peaks: bool = True) -> list[tuple]:
    p = f"speed.{part}"
    rows = [(f"{p}.{ours}.{key}", False), (f"{p}.{base}.{key}", False), (f"{p}.speedup", False),
            (f"{p}.speedup_median", False), (f"{p}.process_peak_rss_mb", False)]  # fmt: skip
    if peaks:
        rows += [(f"{p}.{ours}.peak_memory_mb", GPU_ONLY), (f"{p}.{base}.peak_memory_mb", GPU_ONLY)]
    return rows


NUMBERS: tuple[tuple[str, bool], ...] = (
    ("env.matmul_bf16_tflops", False),
    ("env.datasheet_bf16_tflops", GPU_ONLY),
    *_speed("gen_train", "optimised", "baseline", "images_per_s"),
    ("speed.gen_train.optimised.mfu", False),
    ("speed.gen_train.optimised.decoder_mfu", False),
    ("speed.gen_train.baseline.mfu", False),
    ("speed.gen_train.optimised.mfu_datasheet", GPU_ONLY),
    *_speed("sample", "optimised", "baseline", "images_per_s"),
    *_speed("rollout", "ours", "hf_generate", "tokens_per_s"),
    *_speed("grpo", "ours", "trl", "step_s", peaks=False),
    ("speed.grpo.ours.peak_memory_mb", False),  # CPU: peak RSS per step (StepMeter)
    ("speed.grpo.trl.peak_memory_mb", False),
    ("learning.mllm.steps_done", False),
    ("learning.mllm.vqa.overall", False),
    ("learning.gen.steps_done", False),
    ("learning.gen.geneval.overall", False),
    ("learning.azr.steps_done", False),
    ("learning.azr.heldout.before.pass@1", False),
    ("learning.azr.heldout.after.pass@1", False),
    ("learning.rm_sft.pairs.accuracy", False),
    ("learning.rm_rl.pairs.accuracy", False),
)


def lookup(tree: dict[str, Any], dotted: str) -> Any:
    """`tree["a"]["b"]` for "a.b" (keys may hold "@"), or None."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and x == x  # not NaN


def missing(proof: dict[str, Any]) -> list[str]:
    """Sections, jobs and numbers that a complete proof on this device would have."""
    gpu = lookup(proof, "env.device") == "cuda"
    out = [f"section {s}" for s in SECTIONS if s not in proof]
    for job in JOBS:
        status = lookup(proof, f"{job}.status")
        if status != "ok":
            out.append(f"{job}: {status or 'not run'}")
    out += [
        p for p, gpu_only in NUMBERS if (gpu or not gpu_only) and not is_number(lookup(proof, p))
    ]
    return out
