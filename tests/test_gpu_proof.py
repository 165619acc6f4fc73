"""tools/gpu_proof.py on the CPU: `--mini` writes every section and every number (the CI
rehearsal of the GPU proof), a training section given 5 seconds stops by the clock and still
evaluates, and one part that crashes, hangs or raises costs that part only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.proof import schema
from benchmarks.proof.supervise import Budget, run_parts

ROOT = Path(__file__).resolve().parents[1]
FILES = ["curves.png", "proof.json", "proof.log", "proof.md", "samples.png"]


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> tuple[Path, dict, float]:
    base = tmp_path_factory.mktemp("proof")
    out, work = base / "out", base / "work"
    cmd = [sys.executable, "tools/gpu_proof.py", "--mini", "--out", str(out), "--work", str(work)]
    began = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=420,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    wall = time.monotonic() - began
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, json.loads((out / "proof.json").read_text()), wall


@pytest.mark.timeout(480)
def test_mini_writes_every_section_and_number(mini):
    out, proof, wall = mini
    assert schema.missing(proof) == []  # every section, every job ok, every number a number
    assert sorted(p.name for p in out.iterdir()) == FILES  # at most 8 files come back
    assert proof["report"]["files"] == FILES and proof["proof"]["mini"] is True
    assert set(proof["env"]["switches"].values()) == {"skipped on CPU"}  # the GPU-only paths
    assert proof["env"]["matmul_bf16_tflops"] > 0 and proof["env"]["device"] == "cpu"
    for part in ("gen_train", "sample", "rollout", "grpo"):
        s = proof["speed"][part]
        assert s["speedup"] > 0 and s["met"] is None  # targets are for H100 / H200 cards
    assert proof["speed"]["gen_train"]["optimised"]["mfu"] > 0  # against the measured roofline
    md = (out / "proof.md").read_text()
    assert "CPU rehearsal" in md and "nothing missing" in md and "GenEval-shapes" in md
    assert proof["proof"]["wall_s"] <= proof["proof"]["budget_s"] + 15 and wall < 300


@pytest.mark.timeout(480)
def test_a_section_given_5_seconds_stops_evaluates_and_says_so(mini):
    _, proof, _ = mini
    mllm = proof["learning"]["mllm"]
    assert mllm["train_s"] == 5.0 and mllm["stopped_by_budget"] is True
    assert mllm["steps_done"] >= 1 and mllm["exported"] and mllm["vqa"]["n"] == 16
    for job in ("gen", "azr", "rm_sft", "rm_rl"):
        r = proof["learning"][job]
        assert r["stopped_by_budget"] is True and r["checkpointed"], job
        assert r["exported"] or job == "azr", job
    assert proof["learning"]["gen"]["backbone"].startswith("stage 0 of this proof")
    assert proof["learning"]["rm_rl"]["init"].startswith("the SFT head")
    assert set(proof["learning"]["azr"]["heldout"]) == {"before", "warmstart", "after"}


def test_a_crash_a_hang_and_an_exception_cost_one_part_each(tmp_path, monkeypatch):
    monkeypatch.setenv("PROOF_FAULT", "speed.gen_train=crash,speed.sample=hang,speed.grpo=raise")
    parts = ["speed.gen_train", "speed.sample", "env", "speed.grpo"]
    budget = Budget(120, {"speed.gen_train": 5, "speed.sample": 3, "env": 30, "speed.grpo": 5})
    got: dict[str, dict] = {}
    run_parts(parts, budget, tmp_path / "log", tmp_path / "state.json", True, got.__setitem__)
    assert list(got) == parts
    assert got["speed.gen_train"]["status"].startswith("crashed (exit code 3)")
    assert got["speed.sample"]["status"].startswith("timed out")
    assert got["speed.sample"]["budget_s"] == pytest.approx(3, abs=0.5)
    assert got["env"]["status"] == "ok" and got["env"]["matmul_bf16_tflops"] > 0
    assert (
        got["speed.grpo"]["status"] == "failed" and "injected fault" in got["speed.grpo"]["error"]
    )
    assert budget.done == set(parts)


def test_budget_shares_time_left_by_plan():
    b = Budget(100, {"a": 30, "b": 60, "c": 10}, stretch=2.0, keep_s=10)
    assert b.share("a") == pytest.approx(27, abs=0.1)  # 90 s left, a plans 30 of 100
    b.finish("a")
    b.t0 -= 10  # 10 s went by: 80 s left for b and c (planned 70): b may stretch
    assert b.share("b") == pytest.approx(80 * 60 / 70, abs=0.1)
    assert Budget(1000, {"a": 30}, stretch=2.0).share("a") == 60  # at most stretch x plan
    assert Budget(1000, {"a": 30}).share("a") == 30
