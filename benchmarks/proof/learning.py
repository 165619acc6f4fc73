"""The proof's `learning` section: the recipes of the two learning issues, shortened by the clock.

Five training runs, each a separate process of its tool (`tools/train_<tool>.py`, started by
`tools/gpu_proof.py`) on `configs/proof_<name>_{gpu,mini}.toml`:

    mllm    stage 0 of the `small` preset (captions, VQA, code LM)  -> held-out VQA table
    gen     generation on that frozen backbone                       -> GenEval-shapes table
    azr     Absolute Zero self-play on it             -> held-out deduction, before / after
    rm_sft  RM-R1 stage 1 (distillation SFT) on it    -> held-out pairs (before RL)
    rm_rl   RM-R1 stage 2 (GRPO) from the SFT head    -> held-out pairs (after RL)

Each run gets a training clock (`train.time_budget_s`): its share of the proof's budget minus a
reserve for start-up, export and evaluation. The step under way when the clock runs out is the
last; the run still exports and evaluates, and the proof reports `stopped_by_budget: true`. A
run whose stage-0 backbone is missing (stage 0 failed) falls back to the config's preset, and
says so. Nothing here imports a tool: each runs as its own process, so a crash stays in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.proof.supervise import read_json

STOPPED = "stopped by the time budget"


@dataclass(frozen=True)
class Job:
    name: str
    tool: str  # tools/<tool>.py
    train: str  # the config section holding its TrainConfig
    reserve_s: tuple[float, float]  # (GPU, mini) seconds of its share that are not training
    curves: tuple[str, ...]  # metrics.jsonl columns to plot and report
    extra: tuple[str, ...] = ()


JOBS = (
    Job("mllm", "train_mllm", "train", (30, 12), ("loss",)),
    Job("gen", "train_gen", "train", (35, 11), ("loss", "flow")),
    Job("azr", "train_azr", "train", (30, 13), ("pg/abs_advantage", "pg/loss")),
    Job("rm_sft", "train_rm", "sft.train", (15, 11), ("loss",), ("--stage=sft",)),
    Job("rm_rl", "train_rm", "rl.train", (15, 11), ("reward", "format_fail"), ("--stage=rl",)),
)
BY_NAME = {j.name: j for j in JOBS}
MIN_TRAIN_S = 2.0


def config_name(job: Job, mini: bool) -> str:
    base = "rm" if job.name.startswith("rm_") else job.name
    return f"proof_{base}_{'mini' if mini else 'gpu'}"


def train_seconds(job: Job, share_s: float, mini: bool) -> float:
    return max(MIN_TRAIN_S, share_s - job.reserve_s[1 if mini else 0])


def args(job: Job, work: Path, mini: bool, train_s: float) -> tuple[list[str], dict[str, Any]]:
    """The tool's arguments for `job`, and notes on what it starts from."""
    t = job.train
    argv = ["--config", config_name(job, mini), *job.extra, f"--{t}.out_dir={work / job.name}",
            f"--{t}.resume=false", f"--{t}.time_budget_s={train_s:.1f}"]  # fmt: skip
    notes: dict[str, Any] = {"config": config_name(job, mini), "train_s": round(train_s, 1)}
    stage0 = work / "mllm" / "final"
    if job.name != "mllm":
        if (stage0 / "config.json").is_file():
            argv.append(f"--model.path={stage0}")
            notes["backbone"] = "stage 0 of this proof (learning.mllm)"
        else:
            notes["backbone"] = "the config's preset (random): stage 0 left no model"
    if job.name == "rm_rl":
        head = work / "rm_sft" / "final"
        found = any(head.glob("*.safetensors"))
        argv.append(f"--rl.init={head if found else ''}")
        notes["init"] = "the SFT head (learning.rm_sft)" if found else "a fresh head: no SFT head"
    return argv, notes


def metrics(out: Path) -> list[dict[str, Any]]:
    import json

    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _evaluation(job: Job, out: Path) -> dict[str, Any]:
    """The numbers of the job's held-out evaluation (empty when it wrote none)."""
    if job.name == "mllm":
        r = read_json(out / "eval_vqa.json")
        if not r:
            return {}
        per = {q: v["accuracy"] for q, v in r["per_type"].items()}
        chance = {q: v["chance"] for q, v in r["per_type"].items()}
        n = sum(v["n"] for v in r["per_type"].values())
        return {"vqa": {"overall": r["overall"], "n": n, "per_type": per, "chance": chance}}
    if job.name == "gen":
        r = read_json(out / "geneval_shapes" / "report.json")
        if not r:
            return {}
        keep = ("overall", "per_category", "n_per_category")
        return {"geneval": {k: r[k] for k in keep}}
    if job.name == "azr":
        r = read_json(out / "eval_heldout.json")
        rows = {
            when: {k: v["rows"]["heldout_deduction"][k] for k in ("pass@1", "format_rate", "n")}
            for when, v in r.items()
            if isinstance(v, dict) and "rows" in v
        }  # before, warmstart, after
        return {"heldout": rows} if rows else {}
    r = read_json(out / "eval_pairs.json")
    return {"pairs": r["overall"]} if r else {}


def collect(job: Job, work: Path, log_text: str) -> dict[str, Any]:
    """What the run left: steps, whether the clock stopped it, curves' ends, its evaluation."""
    out = work / job.name
    rows = metrics(out)
    result: dict[str, Any] = {
        "steps_done": rows[-1]["step"] if rows else 0,
        "stopped_by_budget": STOPPED in log_text,
        "exported": (out / "final").is_dir(),  # AZR keeps its head in checkpoints only
        "checkpointed": any((out / "checkpoints").glob("step_*")),
    }
    for key in job.curves:
        seen = [r[key] for r in rows if key in r]
        if seen:
            result[f"{key} first"], result[f"{key} last"] = seen[0], seen[-1]
    speed = [r["items_s"] for r in rows if "items_s" in r]
    if speed:
        result["items_s"] = max(speed)
    return result | _evaluation(job, out)
