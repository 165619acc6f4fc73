"""The nano code world: small deterministic Python programs in Absolute Zero's style, drawn at random.

A program is `def f(<arg>):` followed by a chain of typed steps over one value (an int, a
string, a list of ints, at the end possibly a dict) and a `return`. Each step is one line
(arithmetic, slicing, a comprehension, a builtin) or, from difficulty 2, a small branch or
loop. The difficulty knob sets the number of steps (`difficulty + 1`) and whether branches and
loops may appear:

    0: one line            def f(xs):\\n    return [v * 3 for v in xs]
    1: two lines           ... xs = sorted(xs)\\n    return xs[:2]
    2: three steps, one of them may be a branch or a loop
    3: four steps, branches and loops as often as lines

Inputs are Python literals (`"[3, 1, 4]"`, `"'abca'"`, `"7"`); a message describes the program
in words for induction. Nothing here runs the programs: their outputs come from the sandboxed
executor (`reasoning.nano.tasks`). Every draw is a pure function of its `random.Random`.
Left out on purpose: floats, nested containers, several arguments, recursion and imports.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

TYPES = ("int", "str", "list")
VAR = {"int": "x", "str": "s", "list": "xs", "dict": "d"}
LETTERS = "abcdef"
MAX_DIFFICULTY = 3


@dataclass
class NanoConfig:
    """The nano world in a self-play run (`[azr.nano]`): seed tasks and the held-out split."""

    seeds: int = 0  # training-split tasks of every type added to the seed buffers (0: none)
    seed_difficulty: list[int] = field(default_factory=lambda: [0, 1])
    heldout: int = 0  # held-out tasks of every type scored at each point (0: off)
    heldout_difficulty: list[int] = field(default_factory=lambda: [0, 1, 2])

    def __post_init__(self) -> None:
        for name in ("seed_difficulty", "heldout_difficulty"):
            levels = getattr(self, name)
            if not levels or any(not 0 <= d <= MAX_DIFFICULTY for d in levels):
                raise ValueError(f"azr.nano.{name}: levels in 0..{MAX_DIFFICULTY}, got {levels}")
        if self.seeds < 0 or self.heldout < 0:
            raise ValueError("azr.nano.seeds and azr.nano.heldout must be >= 0")


@dataclass(frozen=True)
class Program:
    """A generated program, the type of its one argument, a message and its difficulty."""

    code: str
    arg: str  # int | str | list
    message: str
    difficulty: int


@dataclass(frozen=True)
class Step:
    """One step: the lines it adds (indented once), the type it leaves, and its description."""

    lines: tuple[str, ...]
    out: str
    says: str


# one-line steps per type: (code, type after, description), with holes filled by `_holes`
LINES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "int": (
        ("x = x + {a}", "int", "add {a}"),
        ("x = x - {a}", "int", "subtract {a}"),
        ("x = x * {k}", "int", "multiply by {k}"),
        ("x = x % {m}", "int", "take the remainder mod {m}"),
        ("x = x // {m}", "int", "integer-divide by {m}"),
        ("s = str(x)", "str", "write it as a string"),
        ("xs = [x * i for i in range({n})]", "list", "list x times 0..{n1}"),
    ),
    "str": (
        ("s = s[::-1]", "str", "reverse it"),
        ("s = s.upper()", "str", "upper-case it"),
        ("s = s.replace('{c}', '{d}')", "str", "replace '{c}' by '{d}'"),
        ("s = s + '{c}'", "str", "append '{c}'"),
        ("s = s[{j}:]", "str", "drop the first {j} characters"),
        ("x = s.count('{c}')", "int", "count the '{c}'s"),
        ("x = len(s)", "int", "take the length"),
        ("xs = [ord(c) - 96 for c in s]", "list", "letters to positions (a=1)"),
    ),
    "list": (
        ("xs = [v + {a} for v in xs]", "list", "add {a} to each"),
        ("xs = [v * {k} for v in xs]", "list", "multiply each by {k}"),
        ("xs = [v for v in xs if v % {m} != 0]", "list", "drop multiples of {m}"),
        ("xs = [v for v in xs if v > {t}]", "list", "keep those above {t}"),
        ("xs = sorted(xs)", "list", "sort"),
        ("xs = sorted(xs, reverse=True)", "list", "sort descending"),
        ("xs = xs[::-1]", "list", "reverse"),
        ("xs = xs[:{j}]", "list", "keep the first {j}"),
        ("xs = xs + [{a}]", "list", "append {a}"),
        ("x = sum(xs)", "int", "sum"),
        ("x = len(xs)", "int", "count"),
        ("s = ''.join(str(v) for v in xs)", "str", "join the digits"),
    ),
}

# branches and loops (difficulty 2 and up): lines joined by "|", the same holes
BLOCKS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "int": (
        ("if x > {t3}:|    x = x - {a}|else:|    x = x + {b}", "int",
         "subtract {a} if above {t3}, else add {b}"),
        ("total = 0|for i in range(x % {m} + 1):|    total += i|x = total", "int",
         "sum 0..(x mod {m})"),
    ),
    "str": (
        ("t = ''|for i, c in enumerate(s):|    if i % {e} == 0:|        t += c.upper()|    else:"
         "|        t += c|s = t", "str", "upper-case every {nth} character"),
        ("x = 0|for c in s:|    if c == '{c}':|        x += 2|    else:|        x -= 1", "int",
         "score +2 per '{c}', -1 otherwise"),
    ),
    "list": (
        ("x = 0|for v in xs:|    if v % {e} == 0:|        x += v|    else:|        x -= 1", "int",
         "add multiples of {e}, -1 for others"),
        ("d = {{}}|for v in xs:|    d[v % {m}] = d.get(v % {m}, 0) + v", "dict",
         "sum by remainder mod {m}"),
        ("out = []|for v in xs:|    if not out or v != out[-1]:|        out.append(v)|xs = out",
         "list", "drop repeated neighbours"),
    ),
}  # fmt: skip


def _holes(rng: random.Random) -> dict[str, object]:
    """Fresh constants for every hole a step may have."""
    c, d = rng.sample(LETTERS, 2)
    n, e = rng.randint(2, 5), rng.randint(2, 3)
    return {"a": rng.randint(1, 9), "b": rng.randint(1, 9), "k": rng.randint(2, 9),
            "m": rng.randint(2, 5), "t": rng.randint(1, 6), "t3": rng.randint(3, 9),
            "j": rng.randint(1, 3), "n": n, "n1": n - 1, "c": c, "d": d, "e": e,
            "nth": {2: "2nd", 3: "3rd"}[e]}  # fmt: skip


def _step(rng: random.Random, kind: str, difficulty: int, last: bool) -> Step:
    """One step from a value of type `kind`; the dict type only as the last step."""
    p_block = {0: 0.0, 1: 0.0, 2: 0.35, 3: 0.5}[difficulty]
    while True:
        pool = BLOCKS[kind] if rng.random() < p_block else LINES[kind]
        code, out, says = rng.choice(pool)
        if out != "dict" or last:
            h = _holes(rng)
            return Step(tuple(code.format(**h).split("|")), out, says.format(**h))


def _collapse(lines: list[str], var: str) -> list[str]:
    """`v = expr` then `return v` becomes `return expr` (AZR-style one-liners)."""
    prefix = f"{var} = "
    if lines and lines[-1].startswith(prefix) and not lines[-1].startswith(prefix + "="):
        return [*lines[:-1], "return " + lines[-1][len(prefix) :]]
    return [*lines, f"return {var}"]


def make_program(rng: random.Random, difficulty: int) -> Program:
    """A program of `difficulty` (0..3) steps + 1, over a random argument type."""
    if not 0 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be 0..{MAX_DIFFICULTY}, got {difficulty}")
    arg = rng.choice(TYPES)
    kind, lines, says = arg, [], []
    for i in range(difficulty + 1):
        s = _step(rng, kind, difficulty, last=i == difficulty)
        lines += s.lines
        says.append(s.says)
        kind = s.out
    body = _collapse(lines, VAR[kind])
    code = f"def f({VAR[arg]}):\n" + "\n".join("    " + ln for ln in body)
    return Program(code, arg, ", then ".join(says).capitalize() + ".", difficulty)


def make_input(rng: random.Random, arg: str) -> str:
    """A literal argument of type `arg`: a small int, a short word, a short list of digits."""
    if arg == "int":
        return str(rng.randint(0, 12))
    if arg == "str":
        return repr("".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 7))))
    if arg == "list":
        return repr([rng.randint(0, 9) for _ in range(rng.randint(3, 6))])
    raise ValueError(f"unknown argument type '{arg}' (one of {TYPES})")


def distinct_inputs(rng: random.Random, arg: str, n: int, tries: int = 200) -> list[str]:
    """`n` different literal arguments (fewer only if `tries` draws cannot find them)."""
    seen: dict[str, None] = {}
    for _ in range(tries):
        if len(seen) >= n:
            break
        seen[make_input(rng, arg)] = None
    return list(seen)
