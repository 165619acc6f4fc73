"""A held-out deduction set: templated small Python functions with seeded random constants.

The programs are written here (never by the model, never in any buffer or seed file), each is
run through the executor's `validate` to get its canonical output, and a fixed seed makes the set
identical across runs, so "before vs after self-play" compares the same questions.
Left out on purpose: abduction / induction variants (CRUXEval-I and HumanEval cover those).
"""

from __future__ import annotations

import random
import string

from reasoning.azr.tasks import Task
from reasoning.azr.verify import validate_tasks
from reasoning.executor import Executor

HELD_OUT_SEED = 20_250_507


def _ints(rng: random.Random, n: int, lo: int = -9, hi: int = 20) -> str:
    return repr([rng.randint(lo, hi) for _ in range(n)])


def _word(rng: random.Random, n: int) -> str:
    return repr("".join(rng.choice(string.ascii_lowercase[:8]) for _ in range(n)))


def _template(rng: random.Random, i: int) -> tuple[str, str]:
    """Program and input of template `i % 8` with fresh constants."""
    a, b, m = rng.randint(2, 5), rng.randint(-3, 6), rng.randint(2, 4)
    kind = i % 8
    if kind == 0:
        code = f"def f(xs):\n    return [x * {a} + {b} for x in xs if x % {m} != 0]"
        return code, _ints(rng, rng.randint(3, 6))
    if kind == 1:
        c1, c2 = rng.sample("abcdefgh", 2)
        return f"def f(s):\n    return s[::-1].replace('{c1}', '{c2}')", _word(
            rng, rng.randint(4, 9)
        )
    if kind == 2:
        code = (
            "def f(n):\n    total = 0\n    for i in range(n):\n"
            f"        if i % {m} == 0:\n            total += i * {a}\n    return total"
        )
        return code, str(rng.randint(3, 15))
    if kind == 3:
        code = (
            "def f(xs):\n    d = {}\n    for x in xs:\n"
            f"        d[x % {m}] = d.get(x % {m}, 0) + x\n    return sorted(d.items())"
        )
        return code, _ints(rng, rng.randint(3, 7), 0, 30)
    if kind == 4:
        code = (
            "def f(s):\n    return ''.join(c.upper() if i % "
            f"{m} == 0 else c for i, c in enumerate(s))"
        )
        return code, _word(rng, rng.randint(4, 9))
    if kind == 5:
        code = f"def f(a, b):\n    while b:\n        a, b = b, a % b\n    return a * {a}"
        g = rng.randint(2, 6)
        return code, f"{g * rng.randint(2, 9)}, {g * rng.randint(2, 9)}"
    if kind == 6:
        rev = rng.choice([True, False])
        code = f"def f(xs):\n    xs = sorted(xs, reverse={rev})\n    return xs[:{m}] + [sum(xs)]"
        return code, _ints(rng, rng.randint(4, 6))
    code = (
        "def f(n):\n    seq = [n]\n    while seq[-1] != 1 and len(seq) < 20:\n"
        "        x = seq[-1]\n        seq.append(x // 2 if x % 2 == 0 else 3 * x + 1)\n"
        f"    return len(seq) + {b}"
    )
    return code, str(rng.randint(2, 30))


def heldout_deduction_set(ex: Executor, n: int = 64, seed: int = HELD_OUT_SEED) -> list[Task]:
    """`n` executor-verified deduction tasks, the same for the same (n, seed)."""
    rng = random.Random(seed)
    drafts = [Task("deduction", *_code_input(rng, i)) for i in range(n)]
    checked = validate_tasks(ex, drafts)
    bad = [why for t, why in checked if t is None]
    if bad:
        raise RuntimeError(f"held-out program failed in the executor: {bad[0]}")
    return [t for t, _ in checked if t is not None]


def _code_input(rng: random.Random, i: int) -> tuple[str, list[str]]:
    code, inp = _template(rng, i)
    return code, [inp]
