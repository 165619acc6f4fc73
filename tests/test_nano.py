"""The nano code world: the difficulty knob, determinism, executor-computed outputs, and a held-out
split that never shares a program text (nor a seed stream) with the training draws."""

import ast
import random

import pytest

from reasoning.azr.tasks import KINDS
from reasoning.nano.tasks import HELD_OUT_SHARE, programs, split_of, split_tasks
from reasoning.nano.world import NanoConfig, make_input, make_program


@pytest.fixture(scope="module")
def ex():
    from reasoning.executor import Executor

    with Executor(workers=2, timeout=2.0) as e:
        yield e


def _body_lines(code: str) -> int:
    return len(code.splitlines()) - 1


def test_difficulty_knob_sets_steps_and_control_flow():
    rng = random.Random(0)
    by_level = {d: [make_program(rng, d) for _ in range(200)] for d in range(4)}
    assert all(_body_lines(p.code) == 1 for p in by_level[0])  # one line: `return expr`
    assert all(_body_lines(p.code) == 2 for p in by_level[1])
    for d in (0, 1):
        assert not any(" for " in p.code.split("\n", 1)[1].replace("for v in xs]", "") and
                       "\n    for " in p.code for p in by_level[d])  # fmt: skip
    loops = {d: sum("\n    for " in p.code or "\n    if " in p.code for p in ps) / 200
             for d, ps in by_level.items()}  # fmt: skip
    assert loops[0] == loops[1] == 0 and 0 < loops[2] < loops[3]
    mean = [sum(map(_body_lines, (p.code for p in ps))) / 200 for ps in by_level.values()]
    assert mean == sorted(mean) and mean[3] > 2 * mean[1]
    for ps in by_level.values():
        for p in ps:
            tree = ast.parse(p.code)  # valid Python, one function f of one argument
            assert [n.name for n in tree.body] == ["f"] and len(tree.body[0].args.args) == 1
            assert p.message.endswith(".") and p.arg in ("int", "str", "list")
            ast.literal_eval(make_input(rng, p.arg))
    with pytest.raises(ValueError, match="difficulty must be 0..3"):
        make_program(rng, 4)


def test_draws_are_pure_functions_of_their_arguments():
    a, b = programs("train", 50, [0, 1, 2]), programs("train", 50, [0, 1, 2])
    assert a == b and programs("train", 50, [0, 1, 2], seed=1) != a
    assert [p.difficulty for p in a[:6]] == [0, 1, 2, 0, 1, 2]


def test_heldout_split_is_disjoint_by_program_text():
    levels = [0, 1, 2, 3]
    held = programs("heldout", 400, levels)
    train = programs("train", 6000, levels)
    held_texts, train_texts = {p.code for p in held}, {p.code for p in train}
    assert not held_texts & train_texts
    assert all(split_of(t) == "heldout" for t in held_texts)
    assert all(split_of(t) == "train" for t in train_texts)
    # the wall is needed: without the text filter, the training stream draws held-out texts
    rng, raw = random.Random("nano/train//0"), []
    raw = [make_program(rng, 0).code for _ in range(2000)]
    assert {t for t in raw if split_of(t) == "heldout"} & held_texts
    share = sum(split_of(t) == "heldout" for t in set(raw)) / len(set(raw))
    assert 0.5 / HELD_OUT_SHARE < share < 2 / HELD_OUT_SHARE
    assert split_of("  " + held[0].code + "\n") == "heldout"  # surrounding whitespace ignored
    with pytest.raises(ValueError, match="split must be one of"):
        programs("test", 1, [0])


def test_heldout_tasks_are_verified_and_disjoint_from_seed_tasks(ex):
    held = split_tasks(ex, "heldout", 24, [0, 1], n_inputs=6, min_pairs=4)
    seeds = [t for ts in split_tasks(ex, "train", 60, [0, 1], 0, 6, 4).values() for t in ts]
    assert {k: len(v) for k, v in held.items()} == {k: 24 for k in KINDS}
    assert not {t.program for ts in held.values() for t in ts} & {t.program for t in seeds}
    assert len({t.identity() for t in held["deduction"]}) == 24  # distinct tasks
    for t in held["deduction"][:8] + seeds[:8]:  # outputs are what the sandbox returns
        assert ex.run(t.program, t.input).output == t.output
    ind = held["induction"][0]
    assert 4 <= len(ind.inputs) <= 6 and len(set(ind.inputs)) == len(ind.inputs) and ind.message
    assert split_tasks(ex, "heldout", 24, [0, 1], n_inputs=6, min_pairs=4) == held  # fixed set


def test_nano_config_rejects_bad_levels():
    with pytest.raises(ValueError, match="azr.nano.heldout_difficulty"):
        NanoConfig(heldout_difficulty=[5])
    with pytest.raises(ValueError, match="azr.nano.seeds"):
        NanoConfig(seeds=-1)


def test_cruxeval_nano_subset(shared_data):
    from evals.nano import cruxeval_nano_rows

    rows = cruxeval_nano_rows(shared_data / "cruxeval" / "cruxeval.jsonl")
    assert 200 < len(rows) < 800
    for r in rows:
        fn = ast.parse(r["code"]).body[0]
        assert len(fn.args.args) == 1 and r["code"].strip().count("\n") <= 8
        assert type(ast.literal_eval(r["input"])) in (int, str, list)
