"""`tools/bench.py` modes on the tiny backbone: each writes a JSON report with its variants and
same-process ratios, sweeps write a PNG; grpo-vs-trl runs TRL beside ours, or skips without it."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from tools import bench as bench_tool


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()  # the modes pin one thread on CPU
    yield
    torch.set_num_threads(before)


def run_mode(argv: list[str], tmp_path: Path, capsys) -> dict:
    out = tmp_path / "report.json"
    report = bench_tool.main([*argv, "--out", str(out)])
    printed = capsys.readouterr().out
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert printed.rstrip().splitlines()[-1]  # the table comes last
    return report


def test_gen_train_ratios_flops_and_sweep(tiny_backbone_dir, tmp_path, capsys):
    plot = tmp_path / "sweep.png"
    argv = ["gen-train", "--set", f"model.path={tiny_backbone_dir}", "--batch", "2"]
    argv += ["--steps", "1", "--rounds", "2", "--warmup", "0", "--ablate"]
    argv += ["--sweep", "batch=1", "--plot", str(plot)]
    r = run_mode(argv, tmp_path, capsys)
    v = r["variants"]
    assert set(v) == {"optimised", "baseline", "only prefix_cache", "only fused_adamw"}
    assert v["baseline"]["options"] == {
        "prefix_cache": False, "fused_adamw": False, "compile": False, "precision": "fp32"
    }  # fmt: skip
    assert all(x["images_per_s"] > 0 and len(x["round_s"]) == 2 for x in v.values())
    assert set(r["ratios"]) == set(v) - {"baseline"}
    assert v["optimised"]["flops_per_step"] < v["baseline"]["flops_per_step"]  # prefix cache
    assert v["only fused_adamw"]["flops_per_step"] == v["baseline"]["flops_per_step"]
    assert {"backbone", "decoder", "connector"} <= set(v["baseline"]["forward_flops_by_module"])
    assert v["baseline"]["mfu"] is None  # no known peak on a CPU
    assert r["sweep"]["values"] == [1] and plot.stat().st_size > 1000
    assert all(p["variants"]["optimised"]["images_per_s"] > 0 for p in r["sweep"]["points"])


def test_sample_reports_calls_and_ratio(tiny_backbone_dir, tmp_path, capsys):
    argv = ["sample", "--set", f"model.path={tiny_backbone_dir}", "--batch", "2"]
    argv += ["--steps", "3", "--rounds", "1", "--warmup", "0", "--baseline"]
    r = run_mode(argv, tmp_path, capsys)
    v = r["variants"]
    assert set(v) == {"t2i optimised", "t2i baseline", "edit optimised", "edit baseline"}
    assert v["t2i optimised"]["calls"]["backbone_passes"] == 1
    assert v["t2i baseline"]["calls"]["backbone_passes"] == 1 + 3  # re-encoded every step
    assert v["edit optimised"]["calls"]["decoder_batch"] == [3 * 2]
    assert set(r["ratios"]) == {"t2i optimised", "edit optimised"}


def test_rollout_against_hf_generate(tiny_backbone_dir, tmp_path, capsys):
    argv = ["rollout", "--model", str(tiny_backbone_dir), "--batches", "2,3"]
    argv += ["--max-new-tokens", "6", "--rounds", "2", "--warmup", "0", "--eos-rate", "0.2"]
    argv += ["--static", "--sweep", "new_tokens=2,4", "--plot", str(tmp_path / "tokens.png")]
    r = run_mode(argv, tmp_path, capsys)
    assert [p["max_new_tokens"] for p in r["sweep"]["points"]] == [2, 4]
    assert (tmp_path / "tokens.png").stat().st_size > 1000
    assert [p["batch"] for p in r["points"]] == [2, 3]
    for p in r["points"]:
        v = p["variants"]
        assert set(v) == {"ours", "ours, no compaction", "ours, static cache", "hf generate"}
        assert v["ours"]["tokens"] == v["ours, no compaction"]["tokens"]  # same seeds
        assert v["ours"]["tokens"] == v["ours, static cache"]["tokens"]
        assert all(0 < t <= p["batch"] * 6 for x in v.values() for t in x["tokens"])
        assert set(p["ratios"]) == {"ours vs ours, no compaction", "ours vs hf generate",
                                    "ours, no compaction vs hf generate",
                                    "ours, static cache vs hf generate"}  # fmt: skip


def test_grpo_vs_trl_skips_without_trl(tmp_path, capsys, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "trl" else find_spec(name, *a)
    )
    r = run_mode(["grpo-vs-trl"], tmp_path, capsys)
    assert "trl is not installed" in r["skipped"]


def test_grpo_vs_trl_same_work(tiny_backbone_dir, tmp_path, capsys):
    pytest.importorskip("trl")
    argv = ["grpo-vs-trl", "--model", str(tiny_backbone_dir), "--prompts", "2", "--group", "2"]
    argv += ["--max-new-tokens", "4", "--rounds", "2", "--warmup", "1"]
    r = run_mode(argv, tmp_path, capsys)
    v = r["variants"]
    assert set(v) == {"ours", "trl"} and r["work"]["completions"] == 4
    assert all(x["step_s"] > 0 and len(x["round_s"]) == 2 for x in v.values())
    # EOS is banned on both sides, so every completion runs to max_new_tokens
    assert v["ours"]["completion_tokens"] == v["trl"]["completion_tokens"] == [4 * 4] * 2
    ratio = r["ratio_trl_over_ours"]
    assert all(math.isfinite(ratio[k]) and ratio[k] > 0 for k in ("best", "median"))
    assert all(x["peak_memory_mb"] is None or x["peak_memory_mb"] > 0 for x in v.values())


def test_gen_train_on_edit_pairs(tiny_backbone_dir, tmp_path, capsys):
    argv = ["gen-train", "--set", f"model.path={tiny_backbone_dir}", "--batch", "2"]
    argv += ["--set", "gen.edit=true", "--set", "data.edit_fraction=1.0", "--baseline"]
    argv += ["--steps", "1", "--rounds", "1", "--warmup", "0"]
    r = run_mode(argv, tmp_path, capsys)
    assert (
        r["variants"]["optimised"]["flops_per_step"] < r["variants"]["baseline"]["flops_per_step"]
    )
    assert r["mean_prompt_tokens"] > 20  # the source image's vision tokens are in the prompt


def test_gen_cache_times_both_variants_on_the_same_loss(tiny_backbone_dir, tmp_path, capsys):
    argv = ["gen-cache", "--set", f"model.path={tiny_backbone_dir}", "--batch", "2"]
    argv += ["--images", "6", "--steps", "1", "--rounds", "2", "--warmup", "0"]
    r = run_mode(argv, tmp_path, capsys)
    v = r["variants"]
    assert r["mode"] == "gen-cache" and set(v) == {"uncached", "cached"}
    assert all(x["images_per_s"] > 0 and len(x["round_s"]) == 2 for x in v.values())
    assert set(r["ratio"]) == {"best", "median", "min", "max"} and r["ratio"]["best"] > 0
    assert r["data"] == {"kind": "folder", "records": 6}  # shapes images written to a folder
    assert r["cache"]["bytes"] > 0 and r["cache"]["kib_per_record"] > 0
    assert r["first_loss"]["uncached"] > 0 and r["first_loss_abs_diff"] < 1e-4
    assert r["mean_prompt_tokens"] > 3
