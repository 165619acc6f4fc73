"""Verifiable preference pairs built procedurally, and templated judge traces for them.

For small-model runs without human labels: two candidate answers to a problem whose truth is
checked mechanically, so RM-R1's Reasoning branch ("solve it yourself, then compare") can be
trained and measured.

- arithmetic: "What is 17 + 25 * 3?"; the chosen solution respects operator precedence, the
  rejected one makes a typical slip (evaluates left to right, or is off in the last step);
- program: a CRUXEval-style small function and an input; the chosen answer states the output
  the sandboxed executor returned, the rejected one the output for a perturbed input.

`template_trace` writes the stage-1 distillation target: type Reasoning, a solution that reaches
the right value, a comparison quoting both answers, the verdict. Every pair is a pure function of
(seed, index). Left out: Chat-type pairs (they need human or teacher labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from reasoning.rm_r1.data import JudgeItem, PreferencePair, TraceExample

KINDS = ("arithmetic", "program")


@dataclass(frozen=True)
class VerifiablePair:
    """A pair whose preference is checked mechanically; `solution` is the worked right answer."""

    pair: PreferencePair
    solution: str
    correct: str
    wrong: str


# ---------------------------------------------------------------------- arithmetic
_APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def _precedence_steps(nums: list[int], ops: list[str]) -> tuple[list[str], int]:
    """Evaluate with * before + / - and return the rewritten expression after each step."""
    nums, ops, steps = list(nums), list(ops), []
    while ops:
        i = ops.index("*") if "*" in ops else 0
        nums[i : i + 2] = [_APPLY[ops[i]](nums[i], nums[i + 1])]
        del ops[i]
        steps.append(_expr(nums, ops))
    return steps, nums[0]


def _left_to_right_steps(nums: list[int], ops: list[str]) -> tuple[list[str], int]:
    nums, ops, steps = list(nums), list(ops), []
    while ops:
        nums[0:2] = [_APPLY[ops[0]](nums[0], nums[1])]
        del ops[0]
        steps.append(_expr(nums, ops))
    return steps, nums[0]


def _expr(nums: list[int], ops: list[str]) -> str:
    out = str(nums[0])
    for op, n in zip(ops, nums[1:]):
        out += f" {op} {n}"
    return out


def arithmetic_pair(rng: np.random.Generator, max_operand: int = 20, max_ops: int = 2):
    """One arithmetic question with a right and a wrong worked solution."""
    n_ops = int(rng.integers(1, max_ops + 1))
    nums = [int(x) for x in rng.integers(1, max_operand + 1, n_ops + 1)]
    ops = [str(o) for o in rng.choice(["+", "-", "*"], n_ops)]
    question = _expr(nums, ops)
    steps, value = _precedence_steps(nums, ops)
    wrong_steps, wrong = _left_to_right_steps(nums, ops)
    if wrong == value:  # no precedence trap here: slip in the last step instead
        wrong = value + int(rng.choice([-1, 1])) * int(rng.integers(1, 4))
        wrong_steps = [*steps[:-1], str(wrong)]

    def solution(chain: list[str]) -> str:
        return " = ".join([question, *chain])

    right_text = f"{solution(steps)}. The answer is {value}."
    wrong_text = f"{solution(wrong_steps)}. The answer is {wrong}."
    pair = PreferencePair(f"What is {question}?", right_text, wrong_text, "arithmetic")
    return VerifiablePair(pair, solution(steps), str(value), str(wrong))


# ---------------------------------------------------------------------- programs
def _ints(rng: np.random.Generator, n: int, hi: int = 9) -> list[int]:
    return [int(x) for x in rng.integers(0, hi + 1, n)]


def _word(rng: np.random.Generator, n: int) -> str:
    return "".join(str(c) for c in rng.choice(list("abcde"), n))


# (source with {k} / {c} holes, input maker); every function is named f (CRUXEval style)
PROGRAMS: tuple[tuple[str, Any], ...] = (
    ("def f(xs):\n    return [x * {k} + {c} for x in xs]", lambda r: _ints(r, 3)),
    ("def f(xs):\n    return sum(x for x in xs if x % {k} == 0)", lambda r: _ints(r, 5)),
    ("def f(xs):\n    return sorted(xs)[-{k}:]", lambda r: _ints(r, 4)),
    ("def f(s):\n    return s.count('a') * {k} + {c}", lambda r: _word(r, 5)),
    ("def f(s):\n    return s[::-1][:{k}]", lambda r: _word(r, 5)),
    (
        "def f(n):\n    total = {c}\n    for i in range(n):\n        total += i * {k}\n"
        "    return total",
        lambda r: int(r.integers(1, 6)),
    ),
    ("def f(xs):\n    return max(xs) - min(xs) + {c}", lambda r: _ints(r, 4)),
    ("def f(s):\n    return s.replace('a', '{k}')", lambda r: _word(r, 4)),
)


def _perturb(value: Any, rng: np.random.Generator) -> Any:
    """A nearby input: change one element / character / the number."""
    if isinstance(value, int):
        return value + int(rng.choice([-1, 1, 2]))
    if isinstance(value, list):
        i = int(rng.integers(len(value)))
        return value[:i] + [value[i] + int(rng.integers(1, 4))] + value[i + 1 :]
    i = int(rng.integers(len(value)))
    return value[:i] + ("a" if value[i] != "a" else "b") + value[i + 1 :]


def program_pair(rng: np.random.Generator, executor: Any, tries: int = 8) -> VerifiablePair:
    """One output-prediction question; both outputs come from the sandboxed executor."""
    for _ in range(tries):
        template, make_input = PROGRAMS[int(rng.integers(len(PROGRAMS)))]
        code = template.format(k=int(rng.integers(1, 4)), c=int(rng.integers(0, 10)))
        x = make_input(rng)
        right, near = executor.run(code, repr(x)), executor.run(code, repr(_perturb(x, rng)))
        if not (right.ok and near.ok) or right.output == near.output:
            continue
        call = f"f({x!r})"
        question = f"What does {call} return?\n\n{code}"
        pair = PreferencePair(
            question,
            f"{call} returns {right.output}.",
            f"{call} returns {near.output}.",
            "program",
        )
        return VerifiablePair(pair, f"{call} == {right.output}", right.output, near.output)
    raise RuntimeError("could not build a program pair (is the executor working?)")


def make_pairs(
    n: int,
    seed: int,
    kinds: Sequence[str] = KINDS,
    executor: Any = None,
    max_operand: int = 20,
    max_ops: int = 2,
) -> list[VerifiablePair]:
    """`n` verifiable pairs; pair i is a pure function of (seed, i).

    Program outputs come from `executor` (a `reasoning.executor.Executor`); one is opened for
    the call when none is given.
    """
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f"procedural kinds must be among {KINDS}, got {list(kinds)}")
    if "program" in kinds and executor is None:
        from reasoning.executor import Executor

        with Executor(workers=2, timeout=1.0) as ex:
            return make_pairs(n, seed, kinds, ex, max_operand, max_ops)
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 11])
        kind = kinds[i % len(kinds)]
        vp = (
            arithmetic_pair(rng, max_operand, max_ops)
            if kind == "arithmetic"
            else program_pair(rng, executor)
        )
        out.append(replace(vp, pair=replace(vp.pair, id=f"{kind}-{seed}-{i}")))
    return out


def template_trace(vp: VerifiablePair, item: JudgeItem) -> str:
    """The stage-1 target for a verifiable pair placed as `item`: solve, compare, verdict."""
    a_val, b_val = (vp.correct, vp.wrong) if item.label == "A" else (vp.wrong, vp.correct)
    good, bad = item.label, "B" if item.label == "A" else "A"
    return (
        "<type>Reasoning</type>\n"
        f"<solution>{vp.solution}</solution>\n"
        f"<eval>A: <quote_A>{a_val}</quote_A>. B: <quote_B>{b_val}</quote_B>. Mine: "
        f"{vp.correct}, so {good} is right and {bad} is wrong.</eval>\n"
        f"<answer>[[{good}]]</answer>"
    )


def trace_example(vp: VerifiablePair, item: JudgeItem) -> TraceExample:
    """A distillation example (pair as placed + templated trace)."""
    return TraceExample(
        item.pair.prompt, item.answer_a, item.answer_b, template_trace(vp, item), item.label
    )
