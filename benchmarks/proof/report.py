"""The proof's `report` section: proof.md (every table, the card, the commit) from proof.json.

Tables: the jobs against their budgets, the card and software, the GPU-only switches, the four
speed comparisons against their targets, and the learning results (held-out VQA, GenEval-shapes,
AZR and RM-R1 before / after). A CPU (`--mini`) report says on top that its numbers rehearse
the code paths and are no GPU measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.proof.schema import JOBS, lookup, missing
from benchmarks.report import format_table


def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:.0f}"
    return str(x)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return "```\n" + format_table(head, [[_f(c) for c in r] for r in rows]) + "\n```\n"


def _note(job: str, r: dict) -> str:
    if "stopped_by_budget" in r:
        return f"steps {r.get('steps_done')}, stopped by budget: {_f(r['stopped_by_budget'])}"
    if r.get("error"):
        return r["error"].strip().splitlines()[-1][:120]
    return str(r.get("why") or (r.get("compile") if job == "speed.gen_train" else "") or "")


def jobs_table(proof: dict) -> str:
    rows = []
    for job in JOBS:
        r = lookup(proof, job) or {}
        status = r.get("status", "not run")
        rows.append((job, status, r.get("budget_s"), r.get("wall_s"), _note(job, r)))
    return _table(("job", "status", "budget s", "wall s", "notes"), rows)


def env_table(env: dict) -> str:
    keys = ("card", "memory_gib", "capability", "driver", "torch", "cuda", "cudnn", "python",
            "matmul_bf16_tflops", "datasheet_bf16_tflops", "bubblewrap")  # fmt: skip
    rows = [(k, env.get(k)) for k in keys]
    rows += [(f"switch {k}", v) for k, v in (env.get("switches") or {}).items()]
    rows += [(f"package {k}", v or "missing") for k, v in (env.get("packages") or {}).items()]
    return _table(("env", "value"), rows)


SPEED = (  # part, what, ours key, baseline key, unit key
    ("gen_train", "generation training, images/s", "optimised", "baseline", "images_per_s"),
    ("sample", "sampling, images/s", "optimised", "baseline", "images_per_s"),
    ("rollout", "rollout, tokens/s (static + compile vs HF generate)", "ours", "hf_generate",
     "tokens_per_s"),
    ("grpo", "GRPO step, s (ours vs TRL GRPOTrainer)", "ours", "trl", "step_s"),
)  # fmt: skip


def speed_table(speed: dict) -> str:
    rows = []
    for part, what, ours, base, unit in SPEED:
        r = speed.get(part) or {}
        o, b = r.get(ours) or {}, r.get(base) or {}
        ratio = f"{_f(r.get('speedup'))} (median {_f(r.get('speedup_median'))})"
        rows.append((what, o.get(unit), b.get(unit), ratio, f">= {_f(r.get('target'))}x",
                     r.get("met"), o.get("peak_memory_mb"), b.get("peak_memory_mb")))  # fmt: skip
    head = ("comparison", "ours", "baseline", "ratio", "target", "met", "peak MiB", "base MiB")
    g = speed.get("gen_train") or {}
    opt = g.get("optimised") or {}
    mfu = (
        f"gen-train MFU (measured roofline): step {_f(opt.get('mfu'))}, decoder "
        f"{_f(opt.get('decoder_mfu'))}; vs datasheet: step {_f(opt.get('mfu_datasheet'))}, "
        f"decoder {_f(opt.get('decoder_mfu_datasheet'))}; target decoder >= "
        f"{_f(g.get('mfu_target'))}, met {_f(g.get('mfu_met'))}; compile: {_f(g.get('compile'))}"
    )
    rss = ", ".join(f"{p} {_f((speed.get(p) or {}).get('process_peak_rss_mb'))}" for p, *_ in SPEED)
    return _table(head, rows) + f"\n{mfu}\n\nprocess peak RSS MiB: {rss}\n"


def learning_tables(learning: dict) -> str:
    parts = []
    vqa = lookup(learning, "mllm.vqa") or {}
    if vqa:
        rows = [(q, a, vqa["chance"].get(q)) for q, a in vqa["per_type"].items()]
        rows.append(("overall", vqa["overall"], None))
        head = f"Held-out VQA after stage 0 (n = {vqa['n']})\n"
        parts.append(head + _table(("question", "accuracy", "chance"), rows))
    ge = lookup(learning, "gen.geneval") or {}
    if ge:
        rows = [*ge["per_category"].items(), ("overall", ge["overall"])]
        head = f"GenEval-shapes, held-out prompts ({ge['n_per_category']} per category)\n"
        parts.append(head + _table(("category", "score"), rows))
    held = lookup(learning, "azr.heldout") or {}
    if held:
        rows = [(k, v["pass@1"], v["format_rate"], v["n"]) for k, v in held.items()]
        parts.append("AZR held-out deduction\n" + _table(("when", "pass@1", "format", "n"), rows))
    rows = [
        (
            name,
            lookup(learning, f"{job}.pairs.accuracy"),
            lookup(learning, f"{job}.pairs.format_fail"),
        )
        for name, job in (("after SFT (before RL)", "rm_sft"), ("after RL", "rm_rl"))
    ]
    if any(r[1] is not None for r in rows):
        head = "RM-R1 held-out pairs, both orders\n"
        parts.append(head + _table(("when", "accuracy", "format fail"), rows))
    return "\n".join(parts) or "no learning results\n"


def markdown(proof: dict) -> str:
    p, env = proof.get("proof", {}), proof.get("env", {})
    title = f"# GPU proof: {env.get('card', 'unknown device')}, {p.get('started', '')}\n\n"
    head = (f"commit `{p.get('commit')}`, budget {_f(p.get('budget_s'))} s, wall "
            f"{_f(p.get('wall_s'))} s, command `{p.get('command')}`\n\n")  # fmt: skip
    if p.get("mini"):
        head += (
            "**CPU rehearsal (`--mini`): tiny sizes; these numbers test the code paths and are "
            "no GPU measurement. GPU-only switches are skipped on CPU.**\n\n"
        )
    gaps = missing(proof)
    body = [
        "## Jobs and budget\n", jobs_table(proof),
        "## Card and software\n", env_table(env),
        "## Speed (side by side in one process)\n", speed_table(proof.get("speed", {})),
        "## Learning (stopped by the clock, then evaluated)\n",
        learning_tables(proof.get("learning", {})),
        "## Missing\n", "\n".join(f"- {g}" for g in gaps) + "\n" if gaps else "nothing missing\n",
    ]  # fmt: skip
    return title + head + "\n".join(body)
