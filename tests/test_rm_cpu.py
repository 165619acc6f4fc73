"""A 2-step smoke run of both stages of `configs/rm_cpu.toml`: OUT/eval_heldout.json carries the
SFT record into the RL stage's, with both A/B orders and the position consistency."""

import json

from unimodal.config import load_config


def test_rm_cpu_sft_then_rl_two_steps(tmp_path, tiny_backbone_dir):
    import tools.train_rm as T

    sft, rl = tmp_path / "sft", tmp_path / "rl"
    common = ["--config", "rm_cpu", f"--model.path={tiny_backbone_dir}", "--data.n_procedural=16",
              "--eval.n=3", "--eval.max_new_tokens=8"]  # fmt: skip
    cfg = load_config(T.CONFIG, [*common, "--stage=sft", f"--sft.train.out_dir={sft}",
                                 "--sft.train.steps=2", "--sft.train.time_budget_s=0"])  # fmt: skip
    assert cfg.judge.r == 64 and cfg.judge.style == "distilled"
    T.main(cfg)
    first = json.loads((sft / "eval_heldout.json").read_text())
    assert first["n"] == 3 and set(first) == {"n", "sft"}
    steps = json.loads((sft / "eval_pairs.json").read_text())["steps"]
    assert steps["n"] == 6 and 0.0 <= steps["quote_A"] <= 1.0  # both orders of 3 pairs
    args = [*common, "--stage=rl", f"--rl.init={sft / 'final'}", f"--rl.train.out_dir={rl}",
            "--rl.train.steps=2", "--rl.max_new_tokens=8", "--rl.train.time_budget_s=0"]  # fmt: skip
    T.main(load_config(T.CONFIG, args))
    held = json.loads((rl / "eval_heldout.json").read_text())
    assert held["sft"] == first["sft"] and held["n"] == 3
    for stage in ("sft", "rl"):
        row = held[stage]
        assert {"ab", "ba", "consistency", "se_ab", "se_ba"} <= set(row)
        assert all(0.0 <= row[k] <= 1.0 for k in ("ab", "ba", "consistency"))
    rows = [json.loads(x) for x in (rl / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
