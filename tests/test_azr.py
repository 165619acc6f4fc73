"""Absolute Zero pieces: strict parsing, rewards, buffers, executor validation and checks."""

import random

import pytest
import torch

from reasoning.azr import (
    GROUPS,
    RewardConfig,
    Task,
    TaskBuffers,
    check_answers,
    learnability,
    load_seed_file,
    parse_answer,
    parse_proposal,
    parse_response,
    proposer_prompt,
    proposer_reward,
    seed_tasks,
    solver_prompt,
    solver_reward,
    validate_tasks,
)
from reasoning.azr.heldout import heldout_deduction_set
from reasoning.azr.tasks import IDENTITY

GOOD = "<think> double it </think>\n<answer>\n```python\ndef f(x):\n    return 2 * x\n```\n```input\n[1, 2]\n```\n</answer>"


def test_parse_good_proposal_and_answers():
    task, p = parse_proposal("deduction", GOOD, None, 10)
    assert p.ok and p.think == "double it"
    assert task.program == "def f(x):\n    return 2 * x" and task.inputs == ["[1, 2]"]
    ind = "<think>t</think><answer>" + "".join(f"```input\n{i}\n```\n" for i in range(10))
    ind += "```message\nsums things\n```</answer>\n"
    prog = seed_tasks()[0]
    task, p = parse_proposal("induction", ind, prog, 10)
    assert p.ok and task.inputs == [str(i) for i in range(10)] and task.message == "sums things"
    assert task.program == prog.program
    assert (
        parse_answer("deduction", "<think>x</think><answer>```output\n[2, 4]\n```</answer>")[0]
        == "[2, 4]"
    )
    assert (
        parse_answer("abduction", "<think></think> <answer>\n```input\n3, 'a'\n```\n</answer>")[0]
        == "3, 'a'"
    )


@pytest.mark.parametrize(
    "text, reason",
    [
        (GOOD.replace("<think> double it </think>\n", ""), "<think>"),  # missing tags
        (GOOD.replace("</answer>", ""), "</answer>"),
        (GOOD + " and that is my answer", "not <think>"),  # trailing text
        (GOOD + "<answer>again</answer>", "<answer>"),  # two answers
        (
            GOOD.replace("```input", "```python\ndef g():\n    return 1\n```\n```input"),
            "2 'python'",
        ),
        (GOOD.replace("```input\n[1, 2]\n```", ""), "missing 'input'"),
        (GOOD.replace("<answer>\n", "<answer>\nHere it is:\n"), "outside code blocks"),
        (
            GOOD.replace("[1, 2]\n```\n</answer>", "[1, 2]\n</answer>"),
            "outside code blocks",
        ),  # unclosed
        (GOOD.replace("[1, 2]", " "), "empty"),
        ("<answer>```python\ndef f(x):\n    return x\n```</answer><think>x</think>", "not <think>"),
    ],
)
def test_parse_rejects_malformed(text, reason):
    task, p = parse_proposal("deduction", text, None, 10)
    assert task is None and not p.ok and reason in p.reason


def test_parse_counts_induction_inputs_exactly():
    body = "".join(f"```input\n{i}\n```" for i in range(9)) + "```message\nm\n```"
    assert not parse_response(
        f"<think>t</think><answer>{body}</answer>", {"input": 10, "message": 1}
    ).ok
    assert parse_answer("deduction", "<think>t</think><answer>42</answer>")[0] is None
    assert (
        parse_answer("induction", "<think>t</think><answer>```output\n1\n```</answer>")[0] is None
    )


def test_prompts_show_what_each_role_needs():
    ded, abd, ind = seed_tasks()
    p = proposer_prompt("abduction", [ded, abd], None, 10)
    assert p.count("### Reference") == 2 and "find an input" in p and IDENTITY in p
    assert "10 different inputs" in proposer_prompt("induction", [], ded, 10)
    assert "'Hello world'" in solver_prompt(ded) and "```input" in solver_prompt(ded)
    assert (
        "```output" in solver_prompt(abd) and "```input" not in solver_prompt(abd).split("###")[0]
    )
    sp = solver_prompt(ind, n_visible=3)
    assert (
        sp.count("```input") == 3 and "Return the argument unchanged." in sp and IDENTITY not in sp
    )


def test_rewards_by_hand():
    cfg = RewardConfig()
    assert learnability(0.25) == 0.75 and learnability(0.0) == 0.0 and learnability(1.0) == 0.0
    assert learnability(1.0, extreme=-0.5) == -0.5
    assert proposer_reward(False, False, None, cfg) == -1.0
    assert proposer_reward(True, False, None, cfg) == -1.0  # official code: invalid = -1
    assert proposer_reward(True, False, None, RewardConfig(invalid_penalty=-0.5)) == -0.5
    assert proposer_reward(True, True, 5 / 8, cfg) == pytest.approx(3 / 8)
    assert proposer_reward(True, True, 1.0, RewardConfig(extreme=-0.5)) == -0.5
    assert solver_reward(True, True, cfg) == 1.0 and solver_reward(True, False, cfg) == -0.5
    assert solver_reward(True, False, RewardConfig(wrong=0.0)) == 0.0
    assert solver_reward(False, False, RewardConfig(format_penalty=-2.0)) == -2.0
    assert len(GROUPS) == 6


def test_buffers_seed_sample_newest_and_round_trip(tmp_path):
    bufs = TaskBuffers(seed_tasks())
    assert bufs.sizes() == {"deduction": 1, "abduction": 1, "induction": 1}
    assert all(b[0].program == IDENTITY for b in bufs.buffers.values())
    new = [
        Task("deduction", f"def f(x):\n    return x + {i}", [str(i)], [str(2 * i)], step=i)
        for i in range(8)
    ]
    assert bufs.add(new) == 8 and bufs.add(new[:3]) == 0  # duplicates dropped
    rng = random.Random(0)
    refs = bufs.references("deduction", 6, rng)
    assert len(refs) == 6 and len({t.program for t in refs}) == 6
    assert len(bufs.references("abduction", 6, rng)) == 1
    newest = bufs.newest("deduction", 3)
    assert [t.step for t in newest] == [7, 6, 5]
    assert [t.step for t in bufs.newest("deduction", 2, skip=2)] == [5, 4]
    assert len(bufs.newest("induction", 4)) == 4  # a short buffer cycles
    assert all(t.kind in ("deduction", "abduction") for t in bufs.programs(rng, 5))
    torch.save({"buffers": bufs.state_dict()}, tmp_path / "s.pt")
    back = TaskBuffers.from_state_dict(torch.load(tmp_path / "s.pt", weights_only=True)["buffers"])
    assert back.sizes() == bufs.sizes() and back.buffers["deduction"][-1] == new[-1]
    assert back.add(new[:1]) == 0


def test_seed_file_formats(shared_data):
    io = load_seed_file(shared_data / "azr-seed" / "7b_seed_io.jsonl", limit=4)
    assert [t.kind for t in io[:2]] == ["deduction", "abduction"] and len(io) == 4
    ind = load_seed_file(shared_data / "azr-seed" / "7b_coder_code_f_seed_io.jsonl", limit=3)
    assert all(t.kind == "induction" and len(t.inputs) >= 6 and t.message for t in ind)


@pytest.fixture(scope="module")
def ex():
    from reasoning.executor import Executor

    with Executor(workers=2, timeout=1.0) as e:
        yield e


def test_validation_through_the_executor(ex):
    ok = Task("deduction", "def f(xs, k):\n    return sorted(xs)[k]", ["[3, 1, 2], 1"])
    bad = {
        "import os\ndef f(x):\n    return os.getcwd()": "rejected",
        "def f(x):\n    while True:\n        pass": "timeout",
        "def f(x):\n    x = x + 1": "returns None",
        "def f(x):\n    return {'a': 1}.__class__": "rejected",
        "def f(x):\n    return 1 / 0": "ZeroDivisionError",
    }
    tasks = [ok] + [Task("abduction", code, ["1"]) for code in bad]
    out = validate_tasks(ex, tasks)
    assert out[0][0].outputs == ["2"] and out[0][1] == ""
    for (task, why), want in zip(out[1:], bad.values()):
        assert task is None and want in why
    ind = Task(
        "induction", "def f(x):\n    return 10 // x", ["1", "2", "0", "5", "1", "4", "x"], []
    )
    t, _ = validate_tasks(ex, [ind], min_pairs=4)[0]
    assert t.inputs == ["1", "2", "5", "4"] and t.outputs == ["10", "5", "2", "2"]
    assert validate_tasks(ex, [ind], min_pairs=5)[0][0] is None
    long = Task("deduction", "def f(n):\n    return 'ab' * n", ["600"])
    assert validate_tasks(ex, [long])[0][0].chars > 1200
    assert "too long" in validate_tasks(ex, [long], max_chars=1000)[0][1]


def test_answer_checks(ex):
    ded = Task("deduction", "def f(s):\n    return s[::-1]", ["'abc'"], ["'cba'"])
    abd = Task("abduction", "def f(x):\n    return x * x", ["3"], ["9"])
    ind = Task("induction", "def f(x):\n    return x + 1", ["1", "5"], ["2", "6"])
    good = ["'cba'", "-3", "def f(y):\n    return 1 + y"]
    wrong = ["'abc'", "4", "def f(y):\n    return 2"]
    assert check_answers(ex, [ded, abd, ind], good) == [True, True, True]
    assert check_answers(ex, [ded, abd, ind], wrong) == [False, False, False]
    assert check_answers(ex, [ded, abd], [None, "__import__('os')"]) == [False, False]
    assert check_answers(ex, [ded], ['"cba"']) == [True]  # compared by value, not by text


def test_heldout_set_is_fixed_and_verified(ex):
    a, b = heldout_deduction_set(ex, 16), heldout_deduction_set(ex, 16)
    assert a == b and len(a) == 16 and len({t.program for t in a}) > 8
    assert all(t.outputs and t.output != "None" for t in a)
    assert heldout_deduction_set(ex, 4, seed=1) != a[:4]


def test_warmstart_pairs_parse_validate_and_are_correct(ex):
    from reasoning.azr.tasks import KINDS
    from reasoning.azr.warmstart import warmstart_pairs

    bufs = TaskBuffers(seed_tasks())
    pairs = warmstart_pairs(bufs, 12, random.Random(0), 2, 10, 5)
    assert len(pairs) == 12
    proposals = []
    for i, (user, response) in enumerate(pairs):
        kind, task = KINDS[i % 3], bufs.buffers[KINDS[i % 3]][0]
        if (i // 3) % 2 == 0:
            assert user == solver_prompt(task, 5)
            answer, p = parse_answer(kind, response)
            assert p.ok and check_answers(ex, [task], [answer]) == [True]
        else:
            t, p = parse_proposal(kind, response, task, 10)
            assert p.ok, p.reason
            proposals.append(t)
    assert all(t is not None for t, _ in validate_tasks(ex, proposals))


def test_selfplay_samples_every_role_at_pg_temperature(monkeypatch):
    """PGConfig owns the temperature: rollouts are sampled at the one the update uses."""
    import reasoning.azr.selfplay as selfplay
    from reasoning.azr import AZRConfig, SelfPlay, selfplay_step
    from reasoning.pg import PGConfig, Rollout

    seen = []

    def fake_generate(bb, prompts, head, max_new_tokens, temperature, *args, **kw):
        seen.append((len(prompts), temperature))
        ids = torch.zeros(2, dtype=torch.long)
        return [Rollout(ids[:1], ids, torch.zeros(2), "no format", True) for _ in prompts]

    class FakeBackbone:
        render = staticmethod(lambda messages: messages[0]["content"])

    class FakeExecutor:
        validate_many = staticmethod(lambda jobs: [])

    monkeypatch.setattr(selfplay, "generate", fake_generate)
    sp = SelfPlay(FakeExecutor(), AZRConfig(references=1), PGConfig(temperature=0.6))
    bufs = TaskBuffers(seed_tasks())
    rolls, records, _ = selfplay_step(FakeBackbone(), bufs, sp, 2, 0, random.Random(0), {})
    assert seen == [(6, 0.6), (0, 0.6), (6, 0.6)]  # propose, learnability (none valid), solve
    assert [r.reward for r in rolls] == [-1.0] * 12 and len(records) == 12
    assert "temperature" not in AZRConfig.__dataclass_fields__
    with pytest.raises(ValueError, match="estimator"):
        AZRConfig(estimator="reinforce_pp")


def test_load_head_reads_shape_and_name_from_the_checkpoint_toml(tiny_backbone_dir, tmp_path):
    from reasoning.azr.head import head_spec, load_head
    from unimodal import checkpoint
    from unimodal.backbone import Backbone
    from unimodal.lora_heads import LoraHeadConfig

    bb = Backbone.from_pretrained(tiny_backbone_dir)
    bb.add_lora("selfplay", r=4, alpha=8, target_modules=("q_proj", "v_proj"))
    with torch.no_grad():
        for p in bb.lora_parameters("selfplay"):
            p.normal_()
    toml = (
        '[model]\nlora_r = 4\nlora_alpha = 8\nlora_dropout = 0.0\ntarget_modules = ["q_proj", '
        '"v_proj"]\n\n[azr]\nhead = "selfplay"\n'
    )
    state = bb.lora_state_dict("selfplay")
    checkpoint.save(tmp_path, 1, {"lora": {k: v * 0 for k, v in state.items()}}, {}, toml)
    checkpoint.save(tmp_path, 2, {"lora": state}, {}, toml)
    other = Backbone.from_pretrained(tiny_backbone_dir)
    assert load_head(other, tmp_path) == "selfplay"  # the run folder's newest checkpoint
    assert all(torch.equal(v, other.lora_state_dict("selfplay")[k]) for k, v in state.items())
    new = {"head": {"name": "h", "r": 2, "alpha": 4, "dropout": 0.1, "target_modules": ["o_proj"]}}
    assert head_spec(new) == LoraHeadConfig("h", 2, 4, 0.1, ("o_proj",))
    with pytest.raises(FileNotFoundError):
        load_head(other, tmp_path / "empty")
