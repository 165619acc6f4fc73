"""One GPU proof command: every speed and learning claim, measured in a single budgeted run.

    PYTHONPATH=/tmp/site:. python tools/gpu_proof.py --out DIR        # a GPU (README: wheels)
    python tools/gpu_proof.py --mini --out runs/proof_mini           # CPU rehearsal, < 3 min
    python tools/gpu_proof.py --out DIR --only speed.rollout,learning.mllm   # rerun some jobs

Sections, in order (benchmarks/proof/): env (card, driver, versions, measured bf16 matmul
roofline, GPU-only switches), speed (four same-process comparisons against naive baselines),
learning (stage 0 -> VQA, generation -> GenEval-shapes, AZR and RM-R1 before / after, each
stopped by the clock and then evaluated), report. Every job runs in its own process under its
share of `--budget` (default 540 s; 240 s with `--mini`), and proof.json is rewritten after each
one, so a crash or a timeout costs that job only. DIR receives proof.json, proof.md,
samples.png, curves.png and proof.log (5 files); the training runs go to `--work`.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.proof import figures, learning, report, schema, speed
from benchmarks.proof.supervise import ROOT, Budget, run_command, run_parts, write_json

PLAN = {  # planned seconds per job at the default budget: (GPU, --mini)
    "env": (25, 8),
    "speed.gen_train": (90, 26),  # --mini: 17.7 s measured, bf16 emulated on CPU
    "speed.sample": (35, 10),
    "speed.rollout": (55, 55),
    "speed.grpo": (45, 12),
    "learning.mllm": (85, 17),  # --mini: 5 s of training (learning.JOBS holds the reserves)
    "learning.gen": (80, 14),
    "learning.azr": (55, 15),
    "learning.rm_sft": (30, 13),
    "learning.rm_rl": (30, 13),
}
REPORT_S = (10, 5)  # kept for the report
LOG_HEAD, LOG_TAIL = 20_000, 400_000  # bytes of each job's log copied into proof.log


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=None, help="seconds (540; --mini: 240)")
    ap.add_argument("--out", type=Path, default=Path("runs/proof_out"))
    ap.add_argument("--work", type=Path, default=Path("runs/proof"), help="training runs")
    ap.add_argument("--mini", action="store_true", help="tiny sizes on the CPU")
    ap.add_argument("--only", default="", help="comma-separated jobs or sections to run")
    ap.add_argument("--commit", default="", help="recorded commit (default: git rev-parse HEAD)")
    args = ap.parse_args(argv)
    args.budget = args.budget or (240.0 if args.mini else 540.0)
    wanted = [w for w in args.only.split(",") if w]
    unknown = [w for w in wanted if not any(_picks(w, j) for j in PLAN)]
    if unknown:
        ap.error(f"--only: unknown {unknown}; jobs: {list(PLAN)}")
    args.jobs = [j for j in PLAN if not wanted or any(_picks(w, j) for w in wanted)]
    return args


def _picks(wanted: str, job: str) -> bool:
    """`--only` entry `wanted` (a job or a section) names `job`."""
    return job == wanted or job.startswith(wanted + ".")


def _git(*argv: str) -> str:
    out = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=10)
    return out.stdout.strip()


def commit() -> str | None:
    """HEAD, with "+dirty" when tracked files differ from it (None without git)."""
    try:
        sha, dirty = _git("rev-parse", "HEAD"), _git("status", "--porcelain", "-uno")
    except (OSError, subprocess.SubprocessError):
        return None
    return (sha + ("+dirty" if dirty else "")) if sha else None


class Proof:
    """proof.json, rewritten whole (atomically) after every job."""

    def __init__(self, out: Path, meta: dict[str, Any]) -> None:
        self.path, self.data = out / "proof.json", {"proof": meta}
        write_json(self.path, self.data)

    def __call__(self, job: str, result: dict[str, Any]) -> None:
        section, _, part = job.partition(".")
        if job == "speed.gen_train":
            result = speed.add_mfu(result, self.data.get("env", {}))
        if part:
            self.data.setdefault(section, {})[part] = result
        else:
            self.data[section] = result
        write_json(self.path, self.data)
        print(f"[proof] {job}: {result.get('status')} ({result.get('wall_s')} s)", flush=True)


def learning_job(job: learning.Job, args, budget: Budget, record: Proof) -> None:
    """Run one training tool under its share of the budget and record what it left."""
    name = f"learning.{job.name}"
    share = budget.share(name)
    train_s = learning.train_seconds(job, share, args.mini)
    argv, notes = learning.args(job, args.work, args.mini, train_s)
    shutil.rmtree(args.work / job.name, ignore_errors=True)
    log = args.work / "logs" / f"{job.name}.log"
    start = time.monotonic()
    end = min(start + 1.3 * share + 10, budget.t0 + budget.total_s - budget.keep_s)
    tool = [sys.executable, str(ROOT / "tools" / f"{job.tool}.py")]
    outcome = run_command(tool + argv, log, lambda: end)
    status = "ok" if outcome.rc == 0 else f"failed (exit code {outcome.rc}); see proof.log"
    status = "timed out; see proof.log" if outcome.timed_out else status
    found = learning.collect(job, args.work, log.read_text(errors="replace"))
    budget.finish(name)
    record(name, {"status": status, "budget_s": round(share, 1),
                  "wall_s": round(outcome.wall_s, 1), **notes, **found})  # fmt: skip


def write_log(work: Path, out: Path) -> None:
    """proof.log: every job's log (head and tail of each), in the order they ran."""
    with open(out / "proof.log", "wb") as dst:
        for log in sorted((work / "logs").glob("*.log"), key=lambda p: p.stat().st_mtime):
            data = log.read_bytes()
            if len(data) > LOG_HEAD + LOG_TAIL:
                data = data[:LOG_HEAD] + b"\n[... cut ...]\n" + data[-LOG_TAIL:]
            dst.write(f"\n\n######## {log.stem}\n".encode() + data)


def finish(args, proof: Proof, started: float) -> dict[str, Any]:
    """The report section: pictures, proof.log, proof.md; proof.json gets its last write."""
    out, files, errors = args.out, ["proof.json", "proof.md", "proof.log"], []
    mode = "CPU rehearsal (--mini)" if args.mini else "GPU proof"
    pictures = {
        "samples.png": lambda p: figures.samples(args.work / "gen" / "geneval_shapes", p),
        "curves.png": lambda p: figures.curves(args.work, p, f"{mode}: learning runs"),
    }
    for name, draw in pictures.items():
        try:  # a missing plotting package costs the picture, not the report
            if draw(out / name):
                files.append(name)
        except Exception as e:
            errors.append(f"{name}: {type(e).__name__}: {e}")
    write_log(args.work, out)
    proof.data["proof"]["wall_s"] = round(time.monotonic() - started, 1)
    proof.data["report"] = {"status": "ok" if not errors else "; ".join(errors)}
    proof.data["report"]["files"] = sorted(files)
    proof.data["report"]["missing"] = schema.missing(proof.data)
    write_json(proof.path, proof.data)
    (out / "proof.md").write_text(report.markdown(proof.data))
    return proof.data


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    started = time.monotonic()
    k = 1 if args.mini else 0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.work / "logs").mkdir(parents=True, exist_ok=True)
    for old in ("proof.json", "proof.md", "proof.log", "samples.png", "curves.png"):
        (args.out / old).unlink(missing_ok=True)
    for log in (args.work / "logs").glob("*.log"):
        log.unlink()
    meta = {
        "mini": args.mini,
        "budget_s": args.budget,
        "jobs": args.jobs,
        "commit": args.commit or commit(),
        "command": " ".join(["tools/gpu_proof.py", *argv]),
        "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    proof = Proof(args.out, meta)
    plan = {j: PLAN[j][k] for j in args.jobs}
    budget = Budget(args.budget, plan, stretch=1.0 if args.mini else 2.0, keep_s=REPORT_S[k])
    parts = [j for j in args.jobs if not j.startswith("learning.")]
    if parts:
        state = args.work / "measure_state.json"
        run_parts(parts, budget, args.work / "logs" / "measure.log", state, args.mini, proof)
    for job in learning.JOBS:
        if f"learning.{job.name}" in args.jobs:
            learning_job(job, args, budget, proof)
    data = finish(args, proof, started)
    print((args.out / "proof.md").read_text(), flush=True)
    gaps = data["report"]["missing"]
    print(f"[proof] {len(gaps)} missing; files in {args.out}: {data['report']['files']}")
    return data


if __name__ == "__main__":
    main()
