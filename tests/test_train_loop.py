"""The shared training skeleton (unimodal.train.loop) on a toy model: the same `stop_at`, resume,
logging and checkpoint behaviour every tool gets, and the batch-size contract."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from unimodal import checkpoint
from unimodal.config import ConfigError, load_config
from unimodal.train import TrainConfig, loop


def run_toy(tc: TrainConfig) -> tuple[loop.Run, nn.Linear, list[int]]:
    import dataclasses

    @dataclasses.dataclass
    class Root:
        train: TrainConfig

    torch.manual_seed(0)
    net = nn.Linear(2, 1)
    run = loop.start(Root(tc), tc, "toy")
    loop.optimizer(run, net.parameters())
    loop.resume(run, lambda c: net.load_state_dict(checkpoint.load_weights(c, "net")))
    model = loop.prepare(run, net)
    data = [torch.tensor([float(i), 1.0]) for i in range(1000)]
    seen = []
    for _ in loop.steps(run):
        batch = torch.stack(loop.take(run, data))  # (B, 2)
        seen.append(int(batch[0, 0]))
        row = loop.update(
            run, model, list(net.parameters()), lambda b=batch: model(b).pow(2).mean()
        )
        loop.log(run, row)
        loop.save(run, lambda: {"net": {k: v.detach() for k, v in net.state_dict().items()}})
    loop.finish(run)
    return run, net, seen


def test_stop_at_then_resume_continues_schedule_and_data(tmp_path):
    base = dict(out_dir=str(tmp_path), steps=5, batch_size=4, warmup_steps=0, log_every=2)
    run, _, seen = run_toy(TrainConfig(**base, save_every=100, stop_at=3))
    assert run.step == 3 and not run.complete and seen == [0, 4, 8]
    assert [c.name for c in checkpoint.list_checkpoints(tmp_path)] == ["step_00000003"]
    run, _, seen = run_toy(TrainConfig(**base, save_every=100))
    assert run.complete and seen == [12, 16]  # the data position resumed exactly
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 3, 4, 5]  # every log_every, and each job's end
    assert all({"loss", "lr", "items_s"} <= r.keys() for r in rows)
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert checkpoint.load_train_state(checkpoint.latest(tmp_path))["position"] == 20


def test_global_batch_must_divide_over_processes():
    tc = TrainConfig(batch_size=6)
    assert tc.per_process(1) == 6 and tc.per_process(3) == 2
    with pytest.raises(ConfigError, match="train.batch_size: 6 is not divisible by the 4"):
        tc.per_process(4)


def test_backbone_dtype_is_a_config_error():
    from unimodal.train.gen_config import GenTrainConfig

    with pytest.raises(ConfigError, match="model.dtype: unknown 'fp8'"):
        load_config(GenTrainConfig, ["--model.dtype=fp8"])


def test_azr_bad_dtype_is_a_config_error_not_a_key_error():
    from reasoning.azr.train_config import AZRTrainConfig

    with pytest.raises(ConfigError, match="model.dtype: unknown 'fp16'"):
        load_config(AZRTrainConfig, ["--model.dtype=fp16"])


def test_time_budget_stops_checkpointed_and_complete(tmp_path):
    """A run whose clock passes `time_budget_s` makes the step under way its last: logged,
    checkpointed, and `complete` (so the tool exports and evaluates what it has)."""
    tc = TrainConfig(out_dir=str(tmp_path), steps=10**6, batch_size=2, warmup_steps=0,
                     log_every=10**5, save_every=10**5, time_budget_s=0.2)  # fmt: skip
    run, _, seen = run_toy(tc)
    assert run.stopped_by_budget and run.complete and 1 <= run.step < 500  # 1000 toy items
    assert seen == [2 * i for i in range(run.step)]
    assert [c.name for c in checkpoint.list_checkpoints(tmp_path)] == [f"step_{run.step:08d}"]
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [run.step]
    off = TrainConfig(out_dir=str(tmp_path / "off"), steps=3, batch_size=2, warmup_steps=0)
    run, _, _ = run_toy(off)  # 0 = no budget, however slow the clock
    assert run.step == 3 and not run.stopped_by_budget
    with pytest.raises(ValueError, match="train.time_budget_s: must be >= 0"):
        TrainConfig(time_budget_s=-1)
