"""The chain-of-rubrics step scores: a templated trace scores 1 on every step, and each kind of
slip (wrong solution, wrong quote, a verdict against its own comparison) is caught alone."""

from evals.rm_trace import step_checks, trace_steps
from reasoning.rm_r1.data import place
from reasoning.rm_r1.judge import Judgement
from reasoning.rm_r1.procedural import make_pairs, template_trace
from reasoning.rm_r1.sources import DataConfig, held_out_pairs
from reasoning.rm_r1.verdict import parse_verdict


def _trace(vp, chosen_first):
    t = template_trace(vp, place(vp.pair, chosen_first))
    return Judgement(parse_verdict(t), t)


def test_template_traces_score_one_on_every_step():
    vps = make_pairs(6, 3, ["arithmetic"])
    truth = [(v.correct, v.wrong) for v in vps]
    steps = trace_steps(truth, [_trace(v, True) for v in vps], [_trace(v, False) for v in vps])
    assert steps["n"] == 12
    assert all(steps[k] == 1.0 for k in ("solution", "quote_A", "quote_B", "mine", "follows"))


def test_each_slip_is_scored_on_its_own_step():
    vp = make_pairs(1, 5, ["arithmetic"])[0]
    good = _trace(vp, True).reasoning
    right, wrong = vp.correct, vp.wrong
    slip = good.replace(f"<quote_A>{right}</quote_A>", "<quote_A>77777</quote_A>")
    s = step_checks(slip, "A", right, right, wrong)
    assert (s["quote_A"], s["quote_B"], s["solution"], s["mine"]) == (0.0, 1.0, 1.0, 1.0)
    assert s["defined"] == 0.0 and s["follows"] == 0.0  # no quote equals "Mine" any more
    against = step_checks(good, "B", right, right, wrong)  # right steps, verdict B
    assert against["quote_A"] == 1.0 and against["defined"] == 1.0 and against["follows"] == 0.0
    bad_sol = good.replace(f"= {right}</solution>", "= 123456</solution>")
    assert step_checks(bad_sol, "A", right, right, wrong)["solution"] == 0.0


def test_held_out_pairs_come_with_their_answers():
    pairs, truth = held_out_pairs(DataConfig(kinds=("arithmetic",)), 5, set())
    assert len(pairs) == len(truth) == 5
    for p, (r, w) in zip(pairs, truth):
        assert p.chosen.endswith(f"The answer is {r}.") and p.rejected.endswith(f"is {w}.")
