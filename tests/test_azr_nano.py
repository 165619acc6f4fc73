"""A 2-step smoke run of `configs/azr_cpu.toml` (and the GPU config that shares its recipe): nano
seed tasks, held-out scores per task type at every point, and the equal-time control."""

import json

from unimodal.config import load_config

KINDS = {"deduction", "abduction", "induction"}


def _small(out, backbone_dir) -> list[str]:
    return [
        f"--model.path={backbone_dir}", f"--train.out_dir={out}", "--train.steps=2",
        "--train.time_budget_s=0", "--train.batch_size=2", "--azr.warmstart_steps=2",
        "--azr.warmstart_batch=6", "--azr.nano.seeds=3", "--azr.nano.heldout=3",
        "--azr.max_new_tokens=8", "--azr.learnability_samples=2", "--eval.max_new_tokens=8",
        "--azr.sample_every=1",
    ]  # fmt: skip


def test_azr_cpu_two_steps_writes_every_point(tmp_path, tiny_backbone_dir):
    import tools.train_azr as T

    out = tmp_path / "run"
    cfg = load_config(T.CONFIG, ["--config", "azr_cpu", *_small(out, tiny_backbone_dir)])
    assert cfg.azr.control and cfg.azr.nano.heldout == 3 and cfg.model.preset == "tiny"
    T.main(cfg)
    held = json.loads((out / "eval_heldout.json").read_text())
    points = ("before", "warmstart", "selfplay", "control")
    assert held["n"] == 3 and all(set(held[p]) == KINDS for p in points)
    assert all(0.0 <= held[p][k] <= 1.0 for p in points for k in KINDS)
    assert set(held["se"]) == set(points) and set(held["format_rate"]["control"]) == KINDS
    assert held["control_steps"] >= 1 and held["selfplay_seconds"] > 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert cfg.azr.warmstart_lr != cfg.train.lr and rows[-1]["lr"] == cfg.train.lr  # restored
    assert rows[-1]["buffer/deduction"] >= 4  # identity + 3 nano seed tasks
    roles = [f"{k}/{r}" for k in KINDS for r in ("propose", "solve")]
    assert all(0.0 <= rows[-1][f"{k}/nonzero_adv"] <= 1.0 for k in roles)
    assert rows[0]["pg/kl"] >= 0.0 and "pg/kl" not in rows[1]  # log_kl = 10: steps 1, 11, ...
    assert rows[-1]["exec/programs"] >= 0 and rows[-1]["exec/programs_s"] >= 0
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert samples and {"propose", "solve"} <= set(samples[0])
    assert (out / "azr_curves.png").stat().st_size > 1000


def test_gpu_config_shares_the_recipe():
    from reasoning.azr.train_config import AZRTrainConfig

    cpu = load_config(AZRTrainConfig, ["--config", "azr_cpu"])
    gpu = load_config(AZRTrainConfig, ["--config", "azr_small_gpu"])
    for c in (cpu, gpu):
        assert c.azr.control and c.azr.warmstart_steps > 0 and c.azr.nano.seeds > 0
        assert c.azr.nano.heldout >= 200 and c.eval.heldout == 0
    assert gpu.azr.nano.seeds > cpu.azr.nano.seeds and gpu.model.preset == "small"


def test_batched_warmstart_logprobs_match_one_at_a_time(tiny_backbone_dir):
    import torch

    from reasoning.azr.warmstart import warmstart_rollouts
    from reasoning.pg.rollout import forced_rollout
    from unimodal.backbone import Backbone
    from unimodal.lora_heads import LoraHeadConfig

    bb = Backbone.from_pretrained(tiny_backbone_dir).freeze()
    bb.add_head(LoraHeadConfig("azr"))
    pairs = [("short", "<think> a </think>"), ("a longer user turn here", "x" * 40), ("q", "y")]
    batched = warmstart_rollouts(bb, pairs, "azr", 0.7, micro_batch=2)
    for (user, resp), roll in zip(pairs, batched):
        one = forced_rollout(bb, bb.render([{"role": "user", "content": user}]), resp, "azr", 0.7)
        assert torch.equal(one.completion_ids, roll.completion_ids)
        assert torch.allclose(one.logprobs, roll.logprobs, atol=1e-4)
        assert roll.advantage == 1.0 and roll.key == "warmstart"
