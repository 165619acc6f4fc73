"""Copy texts for stage-0 LM: key-value recall, and a line repeated.

Recall: random bindings, then asserts that repeat some of them.

    uv = [3, 1, 8]
    k = 'ebb'
    ...
    assert k == 'ebb'
    assert uv == [3, 1, 8]

Each value after `==` can only be predicted by finding its name earlier in the context and
copying what follows it: the copy an RM-R1 judge needs to quote an answer from its prompt, and
an AZR solver to carry an input into its answer. Values are the literals of those tasks (small
ints, short words, short int lists).

Repeat: a line of random names and literals, then the same line again: every token of the copy
is predictable from the first, the plain signal of induction-head studies. (On the `cpu` preset
neither kind formed a copy circuit within a stage-0 budget: README, stage 0.)

Every text is a pure function of (seed, index).
"""

from __future__ import annotations

import numpy as np

LETTERS = "abcdefghijklmnopqrstuvwxyz"
RESERVED = {"as", "if", "in", "is", "or", "f"}  # keywords, and the task functions' name
HELDOUT_RECALL_SEED = 7_340_033  # evals/recall.py; training runs use their own train.seed


def _name(rng: np.random.Generator) -> str:
    while True:
        name = "".join(rng.choice(list(LETTERS), size=int(rng.integers(1, 3))))
        if name not in RESERVED:
            return name


def _literal(rng: np.random.Generator) -> str:
    kind = int(rng.integers(3))
    if kind == 0:
        return str(int(rng.integers(100)))
    if kind == 1:
        return repr("".join(rng.choice(list(LETTERS[:6]), size=int(rng.integers(1, 5)))))
    return str([int(v) for v in rng.integers(10, size=int(rng.integers(1, 6)))])


def recall_text(seed: int, index: int, bindings: tuple[int, int] = (2, 6)) -> str:
    """A recall text: between `bindings` name = value lines (distinct names), then asserts
    repeating a random half or more of them in random order."""
    rng = np.random.default_rng([seed, index, 11])
    n = int(rng.integers(bindings[0], bindings[1] + 1))
    names: list[str] = []
    while len(names) < n:
        name = _name(rng)
        if name not in names:
            names.append(name)
    values = [_literal(rng) for _ in names]
    lines = [f"{k} = {v}" for k, v in zip(names, values)]
    asked = rng.permutation(n)[: max(1, int(rng.integers((n + 1) // 2, n + 1)))]
    lines += [f"assert {names[i]} == {values[i]}" for i in asked]
    return "\n".join(lines) + "\n"


def repeat_text(seed: int, index: int, items: tuple[int, int] = (4, 10)) -> str:
    """A line of between `items` random names and literals, then the line again."""
    rng = np.random.default_rng([seed, index, 13])
    n = int(rng.integers(items[0], items[1] + 1))
    line = " ".join(_name(rng) if rng.random() < 0.3 else _literal(rng) for _ in range(n))
    return f"{line}\n{line}\n"


def words_text(seed: int, index: int, pool: list[str], items: tuple[int, int] = (8, 40)) -> str:
    """A line of between `items` pieces drawn at random from `pool` (a tokenizer's tokens), then
    the line again: like the random-token repeats of induction-head studies, the first line is
    unpredictable, so the second is learnt only by copying (unlike `repeat`, whose few literals
    a bigram model half predicts)."""
    rng = np.random.default_rng([seed, index, 17])
    line = "".join(pool[i] for i in rng.integers(len(pool), size=int(rng.integers(*items) + 1)))
    return f"{line}\n{line}\n"


def repeat_spans(text: str) -> list[tuple[int, int]]:
    """The character span of the repeated line."""
    first = text.index("\n") + 1
    return [(first, len(text.rstrip("\n")))]


def recall_spans(text: str) -> list[tuple[int, int]]:
    """Character spans (start, end) of the values the asserts repeat."""
    spans, pos = [], 0
    for line in text.splitlines(keepends=True):
        if line.startswith("assert ") and " == " in line:
            start = pos + line.index(" == ") + 4
            spans.append((start, pos + len(line.rstrip("\n"))))
        pos += len(line)
    return spans


# kind -> (text of (seed, index), character spans of its copied part)
COPY_TEXTS = {"recall": (recall_text, recall_spans), "repeat": (repeat_text, repeat_spans)}
