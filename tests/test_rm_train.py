"""RM-R1 on the tiny backbone: trace batches, the judge API, and both training stages."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evals.rm_suites import evaluate_pairs, evaluate_rm_bench, rm_table
from reasoning.rm_r1.data import place, write_pairs
from reasoning.rm_r1.distill import trace_batch
from reasoning.rm_r1.judge import HeadSpec, judge, judge_many, load_head, save_head
from reasoning.rm_r1.procedural import make_pairs, trace_example
from reasoning.rm_r1.verdict import parse_verdict
from unimodal import checkpoint
from unimodal.backbone import Backbone
from unimodal.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    if "train_rm" in sys.modules:
        return sys.modules["train_rm"]
    spec = importlib.util.spec_from_file_location("train_rm", ROOT / "tools" / "train_rm.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_rm"] = mod  # dataclasses resolve string annotations through it
    spec.loader.exec_module(mod)
    return mod


def _base(bb: Backbone) -> dict[str, torch.Tensor]:
    named = bb.model.named_parameters()
    return {n.replace(".base_layer", ""): p.detach().clone() for n, p in named if "lora_" not in n}


def _assert_same(bb: Backbone, before: dict[str, torch.Tensor]) -> None:
    after = _base(bb)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_trace_batch_masks_the_trace_only(tiny_backbone_dir):
    bb = Backbone.from_pretrained(tiny_backbone_dir)
    vps = make_pairs(2, 0, ["arithmetic"])
    exs = [trace_example(v, place(v.pair, i == 0)) for i, v in enumerate(vps)]
    prompt, mask = trace_batch(bb, exs, "instruct")
    assert prompt.input_ids.shape == mask.shape
    assert (mask <= prompt.attention_mask).all()
    for row, ex in enumerate(exs):
        target = prompt.input_ids[row][mask[row].bool()]
        assert bb.tokenizer.decode(target) == ex.trace + bb.tokenizer.eos_token
        assert prompt.input_ids[row, -1] == bb.tokenizer.eos_token_id  # right-aligned


def test_judge_api_and_head_round_trip(tiny_backbone_dir, tmp_path):
    bb = Backbone.from_pretrained(tiny_backbone_dir).freeze()
    bb.add_lora("judge", r=4, alpha=8)
    with torch.no_grad():
        for p in bb.lora_parameters("judge"):
            p.normal_(0, 0.5)
    j = judge(bb, "What is 2 + 3?", "5", "6", max_new_tokens=12)
    assert j.verdict == parse_verdict(j.reasoning) and isinstance(j.reasoning, str)
    conv = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "sum 2 3"},
    ]
    many = judge_many(bb, [(conv, "5", "6"), ("q", "a", "b")], max_new_tokens=12, batch_size=2)
    assert len(many) == 2
    save_head(bb, HeadSpec("judge", 4, 8, style="distilled"), tmp_path / "head")
    other = Backbone.from_pretrained(tiny_backbone_dir).freeze()
    spec = load_head(other, tmp_path / "head", "rm")
    assert spec.style == "distilled" and other.lora_names == ["rm"]
    a, b = bb.lora_state_dict("judge"), other.lora_state_dict("rm")
    assert all(torch.equal(v, b[k.replace(".judge.", ".rm.")]) for k, v in a.items())
    same = judge(other, "What is 2 + 3?", "5", "6", head="rm", max_new_tokens=12)
    assert same == j  # greedy: the reloaded head judges identically


def test_sft_then_rl_smoke(tiny_backbone_dir, tmp_path):
    tool = _tool()
    common = [
        "--config",
        "rm_tiny",
        f"--model.path={tiny_backbone_dir}",
        "--data.n_procedural=16",
        "--eval.n=2",
        "--eval.max_new_tokens=8",
    ]
    sft_dir, rl_dir = tmp_path / "sft", tmp_path / "rl"
    cfg = load_config(
        tool.CONFIG,
        [
            *common,
            "--stage",
            "sft",
            f"--sft.train.out_dir={sft_dir}",
            "--sft.train.steps=2",
            "--sft.train.save_every=1",
        ],
    )
    bb = Backbone.from_pretrained(tiny_backbone_dir)
    before = _base(bb)
    report = tool.main(cfg, bb)
    _assert_same(bb, before)
    head = load_file(str(sft_dir / "final" / "judge_lora.safetensors"))
    lora_b = [v for k, v in head.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # B starts at zero in peft
    assert report["overall"]["n"] == 2 and (sft_dir / "eval_pairs.json").is_file()
    rows = [json.loads(x) for x in (sft_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2] and rows[0]["loss"] > 0

    rl_args = [
        *common,
        "--stage=rl",
        f"--rl.init={sft_dir / 'final'}",
        f"--rl.train.out_dir={rl_dir}",
        "--rl.train.steps=2",
        "--rl.max_new_tokens=12",
    ]
    bb = Backbone.from_pretrained(tiny_backbone_dir)
    before = _base(bb)
    tool.main(load_config(tool.CONFIG, rl_args), bb)
    _assert_same(bb, before)
    after = load_file(str(rl_dir / "final" / "judge_lora.safetensors"))
    assert after.keys() == head.keys()
    assert any(not torch.equal(after[k], head[k]) for k in head)
    rows = [json.loads(x) for x in (rl_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(-1 <= r["reward"] <= 1 and "kl" in r for r in rows)
    assert (rl_dir / "curves.png").stat().st_size > 1000

    # resume: one more step continues from the step-2 checkpoint
    resumed = load_config(tool.CONFIG, [*rl_args, "--rl.train.steps=3", "--eval.n=0"])
    tool.main(resumed, Backbone.from_pretrained(tiny_backbone_dir))
    rows = [json.loads(x) for x in (rl_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]


def test_rm_suites_end_to_end(tiny_backbone_dir, shared_data, tmp_path):
    bb = Backbone.from_pretrained(tiny_backbone_dir).freeze()
    data = shared_data / "rm-bench"
    r = evaluate_rm_bench(bb, data, None, "distilled", ["chat"], 1, max_new_tokens=3, batch_size=6)
    chat = r["per_domain"]["chat"]
    assert chat["n"] == 9 and len(chat["matrix"]) == 3 and len(chat["matrix"][0]) == 3
    assert chat["format_fail"] == 1.0 and chat["accuracy"] == 0.0  # 3 tokens cannot hold a verdict
    assert "hard" in rm_table(r) and r["overall"]["normal"] == chat["normal"]
    write_pairs(tmp_path / "p.jsonl", [v.pair for v in make_pairs(3, 0, ["arithmetic"])])
    p = evaluate_pairs(bb, tmp_path / "p.jsonl", head=None, max_new_tokens=3)
    assert p["overall"]["n"] == 3 and set(p["per_domain"]) == {"arithmetic"}
    assert len(p["samples"]) == 3 and "overall" in rm_table(p)


def test_stop_at_stops_checkpointed_without_export(tiny_backbone_dir, tmp_path):
    """`train.stop_at` ends the job after that step of the same schedule (it used to be ignored
    by this tool, which ran and saved on `steps`)."""
    tool, out = _tool(), tmp_path / "sft"
    args = ["--config", "rm_tiny", f"--model.path={tiny_backbone_dir}", "--data.n_procedural=8"]
    args += [f"--sft.train.out_dir={out}", "--sft.train.steps=3", "--sft.train.stop_at=1"]
    tool.main(load_config(tool.CONFIG, args), Backbone.from_pretrained(tiny_backbone_dir))
    assert [c.name for c in checkpoint.list_checkpoints(out)] == ["step_00000001"]
    assert not (out / "final").exists()


def test_config_rejects_unknown_stage():
    with pytest.raises(ValueError, match="stage"):
        load_config(_tool().CONFIG, ["--stage=dpo"])
