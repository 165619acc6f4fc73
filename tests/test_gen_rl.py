"""Flow-GRPO for the generator: rewards and audits, disjoint prompts, the update through the
shared PG maths, a 2-step smoke run of tools/train_gen_rl.py and its exact resume."""

import json

import numpy as np
import pytest
import torch

from unimodal import checkpoint
from unimodal.config import ConfigError, load_config
from unimodal.data import (
    CATEGORIES,
    TRAIN_CATEGORIES,
    Group,
    Obj,
    Scene,
    Spec,
    geneval_prompts,
    is_heldout,
    render,
)
from unimodal.gen_rl.config import FlowGRPOConfig, GenRLConfig, PolicyConfig
from unimodal.gen_rl.prompts import TrainPrompts
from unimodal.gen_rl.reward import Score, score
from unimodal.train import TrainConfig, loop, trainable

EVAL_KEYS = {"n_per_category", "before", "after", "strict_before", "strict_after"}


def _img(*objs: Obj) -> np.ndarray:
    return np.asarray(render(Scene(objs), 64), dtype=np.float32) / 255


def test_reward_pass_partial_credit_and_stray_audit():
    two = _img(Obj("circle", "red", "medium", 0.3, 0.5), Obj("circle", "red", "medium", 0.7, 0.5))
    three = Spec((Group("circle", None, 3),), category="counting")
    s = score(two, three)
    assert not s.ok and s.partial == pytest.approx(2 / 3)
    assert s.reward(0.0) == 0.0 and s.reward(0.5) == pytest.approx(1 / 3)
    good = score(two, Spec((Group("circle", None, 2),), category="counting"))
    assert good.ok and good.strict_ok and good.reward(0.5) == 1.0 and not good.stray
    one = Spec((Group("circle"),), category="single_object")
    assert score(two, one).ok and score(two, one).stray  # passes, but an extra blob
    assert score(two, one).reward(0.5, stray_penalty=0.5) == 0.5 and good.reward(0.5, 0.5) == 1.0
    stray_fail = score(two, Spec((Group("square"),), category="single_object"))
    assert not stray_fail.ok and stray_fail.stray
    assert stray_fail.reward(0.5, 0.5, "all") == stray_fail.reward(0.5) - 0.5
    assert stray_fail.reward(0.5, 0.5, "pass") == stray_fail.reward(0.5)  # failures unpenalised
    assert score(two, one).reward(0.5, 0.5, "pass") == 0.5
    speckled = two.copy()
    speckled[2:6, 2:6] = 1.0  # a 4x4 speck: too small for an object, 0.4% of the image
    assert score(speckled, Spec((Group("circle", None, 2),))).ok
    assert score(speckled, Spec((Group("circle", None, 2),))).stray
    noisy = np.clip(two + np.random.default_rng(0).uniform(0, 0.12, two.shape), 0, 1)
    assert score(noisy, Spec((Group("circle", None, 2),))).stray


def test_rl_training_prompts_are_the_training_split():
    stream = TrainPrompts(seed=3)
    seen = [stream[i] for i in range(600)]
    assert not any(is_heldout(p.spec) for p in seen)
    assert [p.category for p in seen[:6]] == list(TRAIN_CATEGORIES)
    assert not {p.text for p in seen} & {it.text for it in geneval_prompts(32)}


@pytest.fixture(scope="module")
def supervised(tmp_path_factory, tiny_backbone_dir):
    """A 1-step supervised generator folder written by tools/train_gen.py."""
    from tools.train_gen import CONFIG, main

    out = tmp_path_factory.mktemp("supervised")
    args = [f"--model.path={tiny_backbone_dir}", f"--train.out_dir={out}", "--train.steps=1",
            "--train.batch_size=2", "--sample.every=0", "--eval.n_per_category=0",
            "--train.warmup_steps=1"]  # fmt: skip
    main(load_config(CONFIG, args))
    return out / "final"


def _spy(monkeypatch, module, name: str, calls: list) -> None:
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append((name, args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def test_update_goes_through_the_shared_pg_functions(supervised, tmp_path, monkeypatch):
    import unimodal.gen_rl.rollout as rollout_mod
    import unimodal.gen_rl.update as update_mod
    from unimodal.gen_rl.policy import Conditions, Reference, load_policy

    calls: list = []
    for mod, name in ((rollout_mod, "grpo_advantages"), (update_mod, "pg_loss"), (update_mod, "aggregate")):  # fmt: skip
        _spy(monkeypatch, mod, name, calls)
    torch.manual_seed(0)
    policy = load_policy(str(supervised), PolicyConfig(lora_rank=4), "cpu")
    gen = policy.gen
    named = trainable(gen)
    assert named and all("lora_" in k for k in named)
    frozen = {k: p.detach().clone() for k, p in gen.named_parameters() if k not in named}
    before = {k: p.detach().clone() for k, p in named.items()}
    ref = Reference(named)
    prompts = [TrainPrompts(0)[i] for i in range(2)]
    cfg = FlowGRPOConfig(group_size=3, steps=2, partial_credit=0.5, kl_coef=0.1)
    ro = rollout_mod.collect(gen, prompts, cfg, torch.Generator().manual_seed(0))
    assert ro.states.shape[:2] == (3, 6) and ro.logprobs.shape == (6, 2)
    name, args, kwargs = next(c for c in calls if c[0] == "grpo_advantages")
    assert args[1] == [0, 0, 0, 1, 1, 1] and torch.equal(args[0], ro.rewards)
    with torch.no_grad():  # a reward spread so that the advantages move the weights
        ro.advantages.copy_(torch.tensor([1.0, -1.0, 0.5, -0.5, 0.2, -0.2]))
    acc = loop.make_accelerator(TrainConfig(out_dir=str(tmp_path)))
    opt = torch.optim.AdamW(list(named.values()), lr=1e-2)

    def conds():
        with torch.no_grad():
            return Conditions.of(gen, [p.text for p in prompts], gen.cfg.sampler.guidance)

    stats = update_mod.flow_grpo_update(ro, conds, ref, list(named.values()), opt, cfg, acc, 1.0, torch.Generator().manual_seed(0))  # fmt: skip
    assert sum(c[0] == "pg_loss" for c in calls) == 2  # one per denoising step
    assert sum(c[0] == "aggregate" for c in calls) == 2  # the KL term
    assert stats["ratio_dev"] < 1e-4  # one minibatch: the policy is still the rollouts'
    assert any(not torch.equal(before[k], p) for k, p in named.items())
    for k, p in gen.named_parameters():
        if k in frozen:
            assert torch.equal(p, frozen[k]), k
    with ref.active():
        assert all(torch.equal(p, before[k]) for k, p in named.items())
    assert any(not torch.equal(before[k], p) for k, p in named.items())


def test_train_timesteps_draws_k_distinct_steps():
    from unimodal.gen_rl.update import train_steps

    g = torch.Generator().manual_seed(0)
    draws = [train_steps(10, 3, g) for _ in range(50)]
    assert all(len(d) == 3 and d == sorted(set(d)) and 0 <= d[0] and d[-1] < 10 for d in draws)
    assert len({tuple(d) for d in draws}) > 10  # random, not a fixed window
    assert set().union(*draws) == set(range(10))
    assert train_steps(10, 0, g) == list(range(10)) and train_steps(4, 9, g) == list(range(4))


def _rl_args(supervised, out, *extra: str) -> list[str]:
    return [f"--init={supervised}", f"--train.out_dir={out}", "--train.batch_size=2",
            "--rl.group_size=2", "--rl.steps=2", "--eval.n_per_category=1", "--eval.batch_size=6",
            "--train.save_every=1", "--train.warmup_steps=1", "--rl.minibatches=2", *extra]  # fmt: skip


def test_train_gen_rl_smoke_writes_the_reports(supervised, tmp_path):
    from tools.train_gen_rl import main
    from unimodal.pipeline import Pipeline

    out = tmp_path / "rl"
    extra = ("--train.steps=2", "--rl.partial_credit=0.5", "--rl.kl_coef=0.1", "--rl.guidance=2.0",
             "--rl.ode_last_step=true", "--rl.train_timesteps=1", "--rl.stray_penalty=0.5",
             "--rl.stray_scope=pass")  # fmt: skip
    report = main(load_config(GenRLConfig, _rl_args(supervised, out, *extra)))
    written = json.loads((out / "rl_eval.json").read_text())
    assert set(written) == EVAL_KEYS and written["n_per_category"] == 1
    for k in EVAL_KEYS - {"n_per_category"}:
        assert set(written[k]) == {"overall", *CATEGORIES}
        assert 0.0 <= written[k]["overall"] <= 1.0
    assert set(report["stray_after"]) == {"overall", *CATEGORIES}
    for png in ("before_after", "reward_per_category", "kl", "clip_frac", "curves"):
        assert (out / f"{png}.png").is_file(), png
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and {"reward", "kl", "clip_frac"} <= set(rows[0])
    pipe = Pipeline.from_pretrained(out / "final", device="cpu")
    assert pipe.generate("a red circle", steps=2)[0].size == (32, 32)


def _brightness_score(image, spec) -> Score:
    """A stand-in reward that always spreads within a group (a 1-step generator fails all)."""
    return Score(False, False, float(torch.sigmoid(10 * image.mean())), False)


def test_train_gen_rl_resumes_exactly(supervised, tmp_path, monkeypatch):
    import unimodal.gen_rl.rollout as rollout_mod
    from tools.train_gen_rl import main

    monkeypatch.setattr(rollout_mod, "score", _brightness_score)
    extra = ("--policy.train_mode=full", "--policy.train_conditions=true", "--rl.scale_std=false",
             "--eval.n_per_category=0", "--train.steps=2", "--rl.partial_credit=0.5")  # fmt: skip
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    main(load_config(GenRLConfig, _rl_args(supervised, straight, *extra)))
    main(load_config(GenRLConfig, _rl_args(supervised, resumed, *extra, "--train.stop_at=1")))
    assert checkpoint.latest(resumed).name == "step_00000001"
    assert not (resumed / "final").exists()
    main(load_config(GenRLConfig, _rl_args(supervised, resumed, *extra)))
    a = checkpoint.load_weights(checkpoint.latest(straight), "trainable")
    b = checkpoint.load_weights(checkpoint.latest(resumed), "trainable")
    assert a.keys() == b.keys() and any(k.startswith("connector.") for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    from safetensors.torch import load_file

    start = load_file(supervised / "generator.safetensors")
    assert any(not torch.equal(a[k], start[k]) for k in a if k.startswith("decoder."))
    assert any(not torch.equal(a[k], start[k]) for k in a if k.startswith("connector."))


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--policy.train_mode=qlora"], "policy.train_mode"),
        (["--rl.group_size=1"], "rl.group_size"),
        (["--rl.noise_level=0"], "rl.noise_level"),
        (["--rl.partial_credit=1.0"], "rl.partial_credit"),
        (["--rl.train_timesteps=-1"], "rl.train_timesteps"),
        (["--rl.stray_penalty=-0.5"], "rl.stray_penalty"),
        (["--rl.stray_scope=fail"], "rl.stray_scope"),
    ],
)
def test_bad_rl_config_is_a_clear_error(argv, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(GenRLConfig, argv)


def test_grad_accum_and_missing_init_are_clear_errors(tmp_path):
    from tools.train_gen_rl import main

    with pytest.raises(ConfigError, match="train.grad_accum"):
        main(load_config(GenRLConfig, [f"--train.out_dir={tmp_path}", "--train.grad_accum=2"]))
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        main(load_config(GenRLConfig, [f"--train.out_dir={tmp_path}", f"--init={tmp_path}/none"]))
