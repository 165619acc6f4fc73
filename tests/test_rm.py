"""RM-R1 pieces: verdict parsing, rewards, prompts, A/B balance, readers, scoring, traces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evals.rm_suites import both_orders, rm_bench_scores, style_matrix_scores, summary
from reasoning.rm_r1.data import (
    PairStream,
    PreferencePair,
    TraceExample,
    hh_pair,
    place,
    read_preference_file,
    read_rm_bench,
    read_traces,
    write_pairs,
    write_traces,
)
from reasoning.rm_r1.procedural import arithmetic_pair, make_pairs, template_trace, trace_example
from reasoning.rm_r1.prompts import CHAIN_OF_RUBRICS, judge_messages
from reasoning.rm_r1.verdict import parse_verdict, trace_reward, verdict_reward


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<type>Chat</type> ... <answer>[[A]]</answer>", "A"),
        ("<eval>B quotes [[A]] wrongly</eval>\n<answer> Chatbot B: [[B]] </answer>\n", "B"),
        ("<answer>[[A]] or [[B]]</answer>", None),  # both present
        ("<answer>[[A]][[A]]</answer>", None),  # twice
        ("<answer>A</answer>", None),  # no verdict token
        ("I prefer [[A]].", None),  # no answer block
        ("<answer>[[A]]</answer> Actually, B is better.", None),  # trailing text
        ("<answer>[[A]]</answer><answer>[[B]]</answer>", None),  # two answers
        ("<verdict>[[A]]</verdict>", None),  # wrong tag
        ("<answer>[[C]]</answer>", None),  # wrong letter
        ("<answer>[A]</answer>", None),  # single brackets
        ("<answer>[[A]]", None),  # unterminated
        ("", None),
    ],
)
def test_parse_verdict(text, expected):
    assert parse_verdict(text) == expected


def test_rewards():
    assert verdict_reward("A", "A") == 1.0 and verdict_reward("B", "B") == 1.0
    assert verdict_reward("B", "A") == -1.0 and verdict_reward(None, "A") == -1.0
    assert trace_reward("<answer>[[B]]</answer>", "B") == 1.0
    assert trace_reward("<answer>[[B]]</answer> extra", "B") == -1.0


def test_single_turn_prompt():
    msgs = judge_messages("What is 2+2?", "It is 4.", "It is 5.", "instruct")
    assert [m["role"] for m in msgs] == ["system", "user"] and msgs[0][
        "content"
    ] == CHAIN_OF_RUBRICS
    body = msgs[1]["content"]
    assert body.index("What is 2+2?") < body.index("It is 4.") < body.index("It is 5.")
    assert "[The Start of Chatbot A's Response]\nIt is 4.\n" in body
    for tag in ("<type>Chat</type>", "<type>Reasoning</type>", "<rubric>", "<solution>"):
        assert tag in CHAIN_OF_RUBRICS
    distilled = judge_messages("What is 2+2?", "It is 4.", "It is 5.", "distilled")
    assert [m["role"] for m in distilled] == ["user"]
    assert "<answer>[[A]]</answer>" in distilled[0]["content"]
    with pytest.raises(ValueError):
        judge_messages("q", "a", "b", "verbose")


def test_multi_turn_prompt_is_two_transcripts():
    conv = [
        {"role": "user", "content": "Hi, name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one?"},
    ]
    body = judge_messages(conv, "Red.", "No.", "distilled")[0]["content"]
    a = body[body.index("Chatbot A and the Client]") : body.index("Chatbot B and the Client]")]
    assert "User: Hi, name a colour.\nChatbot A: Blue.\nUser: Another one?\nChatbot A: Red." in a
    assert "Chatbot B: No.\n[The End of the Conversation between Chatbot B" in body
    with pytest.raises(ValueError, match="end with a user turn"):
        judge_messages(conv[:2], "x", "y")


def test_ab_positions_balanced_and_labels_right():
    for n in (6, 7):  # even and odd pool sizes (epoch boundaries)
        stream = PairStream([PreferencePair(f"q{i}", "c", "r") for i in range(n)], seed=1)
        labels = [stream[i].label for i in range(10 * n)]
        for start in range(0, 10 * n, 2):  # every aligned window of 2 is one A, one B
            assert {labels[start], labels[start + 1]} == {"A", "B"}
    pairs = [PreferencePair(f"q{i}", f"good{i}", f"bad{i}") for i in range(7)]
    stream = PairStream(pairs, seed=3)
    items = [stream[i] for i in range(70)]
    for it in items:
        good = it.answer_a if it.label == "A" else it.answer_b
        assert good == it.pair.chosen
    first = [it.label for it in items if it.pair.prompt == "q0"]
    assert {"A", "B"} <= set(first)  # the same pair is shown both ways over epochs
    assert [stream[i] for i in range(5)] == items[:5]  # a pure function of the index


def test_preference_file_round_trip(tmp_path):
    conv = (
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "bye?"},
    )
    pairs = [
        PreferencePair("p", "c", "r", "math", "1"),
        PreferencePair(conv, "c2", "r2", "chat", "2"),
    ]
    write_pairs(tmp_path / "p.jsonl", pairs)
    assert read_preference_file(tmp_path / "p.jsonl") == pairs
    (tmp_path / "bad.jsonl").write_text('{"prompt": "p", "chosen": "c"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: 'rejected'"):
        read_preference_file(tmp_path / "bad.jsonl")


def test_hh_pair_split():
    c = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: insult me\n\nAssistant: No."
    r = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: insult me\n\nAssistant: You fool."
    pair = hh_pair(c, r)
    assert pair.chosen == "No." and pair.rejected == "You fool."
    assert [t["content"] for t in pair.prompt] == ["hi", "hello", "insult me"]
    assert (
        hh_pair(c, "\n\nHuman: other\n\nAssistant: hello\n\nHuman: insult me\n\nAssistant: x")
        is None
    )


def test_shared_readers(shared_data):
    hh = read_preference_file(shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz")
    assert len(hh) > 2200 and all(p.chosen != p.rejected for p in hh)
    items = read_rm_bench(shared_data / "rm-bench")
    assert {i.domain for i in items} == {"chat", "code", "safety"}
    assert all(len(i.chosen) == len(i.rejected) == 3 for i in items)
    assert len(read_rm_bench(shared_data / "rm-bench", ["chat"])) == 129


def test_rm_bench_style_matrix_hand_example():
    # two items; correct[n, i, j] for chosen style i vs rejected style j
    correct = np.zeros((2, 3, 3))
    correct[:, 1, 0] = correct[:, 2, 0] = correct[:, 2, 1] = 1  # lower-left all right
    correct[0, 0, 0] = correct[0, 1, 1] = correct[1, 2, 2] = 1  # diagonal 3/6
    correct[0, 0, 2] = 1  # upper-right 1/6
    s = style_matrix_scores(correct)
    assert s["easy"] == pytest.approx(1.0)
    assert s["normal"] == pytest.approx(0.5)
    assert s["hard"] == pytest.approx(1 / 6)
    assert s["matrix"][0][2] == pytest.approx(0.5)


def test_both_orders_and_rm_bench_scores():
    ab = ["A", "A", "B", None]  # chosen shown at A
    ba = ["B", "A", "B", "B"]  # chosen shown at B
    o = both_orders(ab, ba)
    s = summary(o)
    assert s["acc_chosen_A"] == 0.5 and s["acc_chosen_B"] == 0.75 and s["accuracy"] == 0.625
    assert s["consistency"] == 0.25  # only pair 0 prefers the same response both times
    assert s["format_fail"] == 0.125
    # one RM-Bench item (9 cells): right in both orders except the upper-right cells
    cells = [(i, j) for i in range(3) for j in range(3)]
    ab = ["B" if i < j else "A" for i, j in cells]
    ba = ["A" if i < j else "B" for i, j in cells]
    r = rm_bench_scores(both_orders(ab, ba), ["chat"] * 9)
    assert r["per_domain"]["chat"]["hard"] == 0.0 and r["overall"]["easy"] == 1.0
    assert r["overall"]["normal"] == 1.0 and r["overall"]["accuracy"] == pytest.approx(6 / 9)


def test_procedural_pairs_are_right():
    for i in range(50):
        vp = arithmetic_pair(np.random.default_rng(i), 20, 2)
        expr = vp.pair.prompt.removeprefix("What is ").removesuffix("?")
        nums, ops = [int(t) for t in expr.split()[::2]], expr.split()[1::2]
        terms, sign = [nums[0]], []  # independent check: fold * first, then + / -
        for op, n in zip(ops, nums[1:]):
            if op == "*":
                terms[-1] *= n
            else:
                terms.append(n)
                sign.append(op)
        value = terms[0] + sum(t if s == "+" else -t for s, t in zip(sign, terms[1:]))
        assert vp.correct == str(value) != vp.wrong
        assert vp.pair.chosen.endswith(f"The answer is {value}.")


def test_program_pairs_use_the_executor():
    vps = make_pairs(24, 0, ["program"])
    for vp in vps:
        assert vp.pair.domain == "program" and vp.correct != vp.wrong
        assert f"returns {vp.correct}." in vp.pair.chosen
    # f([a, b, c]) = [x * k + c ...]: a known template's output checked by hand
    listed = [vp for vp in vps if "for x in xs]" in vp.pair.prompt]
    assert listed
    for vp in listed:
        xs = json.loads(vp.pair.prompt.split("f(")[1].split(")")[0])
        k = int(vp.pair.prompt.split("x * ")[1].split(" ")[0])
        c = int(vp.pair.prompt.split(" + ")[1].split(" ")[0])
        assert vp.correct == str([x * k + c for x in xs])


def test_template_traces_parse_to_label_and_round_trip(tmp_path):
    vp = make_pairs(1, 1, ["arithmetic"])[0]
    for first in (True, False):
        item = place(vp.pair, first)
        trace = template_trace(vp, item)
        assert parse_verdict(trace) == item.label
        assert trace.startswith("<type>Reasoning</type>") and vp.solution in trace
    exs = [trace_example(vp, place(vp.pair, f)) for f in (True, False)]
    exs.append(
        TraceExample("", "", "", "<answer>[[A]]</answer>", "A", ({"role": "user", "content": "x"},))
    )
    write_traces(tmp_path / "t.jsonl", exs)
    assert read_traces(tmp_path / "t.jsonl") == exs
    bad = {
        "prompt": "p",
        "answer_a": "a",
        "answer_b": "b",
        "trace": "<answer>[[B]]</answer>",
        "verdict": "A",
    }
    (tmp_path / "bad.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match="does not parse to its verdict"):
        read_traces(tmp_path / "bad.jsonl")


def test_judge_rollouts_sample_at_the_update_temperature_and_dr_grpo(monkeypatch):
    """One temperature for sampling and log-probs (`GRPOConfig.pg`); Dr. GRPO only centres."""
    import torch

    import reasoning.rm_r1.grpo as grpo
    from reasoning.pg import Rollout
    from reasoning.rm_r1.data import JudgeItem, PreferencePair

    seen = []

    def fake_generate(backbone, prompts, head, max_new_tokens, temperature, *args, **kw):
        seen.append(temperature)
        ids = torch.zeros(2, dtype=torch.long)
        texts = ["<answer>[[A]]</answer>", "<answer>[[B]]</answer>"] * (len(prompts) // 2)
        return [Rollout(ids[:1], ids, torch.zeros(2), t, True) for t in texts]

    class FakeBackbone:
        render = staticmethod(lambda messages: str(messages))

    monkeypatch.setattr(grpo, "generate", fake_generate)
    item = JudgeItem(PreferencePair("q", "right", "wrong"), "right", "wrong", "A")
    for scale_std, size in ((True, 1 / (4 / 3) ** 0.5), (False, 1.0)):  # unbiased std of +-1
        cfg = grpo.GRPOConfig(group_size=4, temperature=0.7, scale_std=scale_std)
        rolls = grpo.judge_rollouts(FakeBackbone(), [item], "judge", "instruct", cfg)
        assert [r.advantage for r in rolls] == pytest.approx([size, -size] * 2, abs=1e-5)
        assert seen[-1] == cfg.pg(1.0).temperature == 0.7
    pg = grpo.GRPOConfig(max_new_tokens=96, aggregation="seq-mean-token-sum-norm").pg(1.0)
    assert pg.max_tokens == 96  # Dr. GRPO's L_max is the generation budget, as TRL's
