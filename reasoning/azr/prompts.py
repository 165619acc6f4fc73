"""Proposer and solver prompts for the three AZR task types, and the one strict response parser.

Every response must be `<think> ... </think>` then `<answer> ... </answer>` with nothing but
whitespace after, and the answer must hold exactly the expected fenced blocks (```python,
```input, ```output, ```message) and nothing else. The same parser serves training rewards and
evaluation. The wording is ours, written after AZR's prompts (appendix of the paper), not copied.
Left out on purpose: AZR's banned-keyword list (the sandboxed executor enforces safety instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from reasoning.azr.tasks import Task

FORMAT = "<think> your step-by-step reasoning </think>\n<answer>\n{blocks}\n</answer>"
RULES = (
    "- `f` must be deterministic and return a value; helper functions and standard-library "
    "imports (math, itertools, collections, ...) are fine; no randomness, clocks, files, "
    "network or printing.\n"
    "- An input is the argument list of one call written as Python literals, e.g. "
    "`[3, 1, 2], 'a'` for `f([3, 1, 2], 'a')`."
)
GOALS = {
    "deduction": "shown the program and the input, must work out the output",
    "abduction": "shown the program and the output, must find an input that produces it",
}


def block(lang: str, body: str) -> str:
    return f"```{lang}\n{body.strip()}\n```"


def _task_blocks(t: Task) -> str:
    return "\n".join(
        [block("python", t.program), block("input", t.input), block("output", t.output)]
    )


def proposer_prompt(kind: str, references: list[Task], program: Task | None, n_inputs: int) -> str:
    """The user turn asking for a new task of `kind` (induction: inputs for `program`)."""
    if kind == "induction":
        assert program is not None, "an induction proposal needs a program"
        blocks = "\n".join([block("input", "...")] * 2 + ["...", block("message", "...")])
        return (
            "## Task: propose inputs and a message for an induction task\n"
            f"Write {n_inputs} different inputs for the program below and a message that hints "
            "at what it does. Another model will see the message and some of the (input, "
            "output) pairs and must recover the program, which is checked on the others, so "
            "choose diverse inputs that reveal its behaviour.\n"
            f"{RULES}\n\n{block('python', program.program)}\n\n"
            f"### Answer format ({n_inputs} input blocks, then one message block)\n"
            + FORMAT.format(blocks=blocks)
        )
    refs = "\n\n".join(
        f"### Reference {i + 1}\n{_task_blocks(t)}" for i, t in enumerate(references)
    )
    return (
        f"## Task: propose a new {kind} task\n"
        f"Design a Python program `f` and one input for it. Another model, {GOALS[kind]}. "
        "Make the task solvable with careful reasoning but not trivial, and different from "
        "the references.\n"
        f"{RULES}\n\n{refs}\n\n### Answer format\n"
        + FORMAT.format(
            blocks=block("python", "def f(...):\n    ...") + "\n" + block("input", "...")
        )
    )


def solver_prompt(task: Task, n_visible: int = 5) -> str:
    """The user turn posing `task` to the solver."""
    if task.kind == "deduction":
        return (
            "## Task: deduce the output\nWork out the value `f` returns for the given input; "
            "write it as a Python literal.\n\n"
            f"{block('python', task.program)}\n{block('input', task.input)}\n\n"
            "### Answer format\n" + FORMAT.format(blocks=block("output", "..."))
        )
    if task.kind == "abduction":
        return (
            "## Task: find an input\nFind an input (the arguments of one call) for which `f` "
            "returns the given output.\n\n"
            f"{block('python', task.program)}\n{block('output', task.output)}\n\n"
            "### Answer format\n" + FORMAT.format(blocks=block("input", "..."))
        )
    pairs = "\n".join(
        f"{block('input', i)}\n{block('output', o)}"
        for i, o in zip(task.inputs[:n_visible], task.outputs[:n_visible])
    )
    return (
        "## Task: write the program\nWrite a Python function `f` that maps each input below to "
        "its output; it will also be tested on hidden inputs.\n\n"
        f"{block('message', task.message)}\n{pairs}\n\n"
        "### Answer format\n" + FORMAT.format(blocks=block("python", "def f(...):\n    ..."))
    )


# The block each role writes, per task type ("input" for induction proposals is n_inputs).
SOLVER_BLOCK = {"deduction": "output", "abduction": "input", "induction": "python"}
TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_SHAPE = re.compile(r"\s*<think>(.*)</think>\s*<answer>(.*)</answer>\s*", re.S)
_FENCE = re.compile(r"```([A-Za-z]+)[ \t]*\n(.*?)```", re.S)


@dataclass
class Parsed:
    """A parsed response: `ok` with the blocks by language, or the reason it was rejected."""

    ok: bool
    blocks: dict[str, list[str]] = field(default_factory=dict)
    reason: str = ""
    think: str = ""


def parse_response(text: str, expect: dict[str, int]) -> Parsed:
    """Parse strictly: one think, one answer, exactly `expect` blocks (language -> count)."""
    for tag in TAGS:
        if (n := text.count(tag)) != 1:
            return Parsed(False, reason=f"expected one {tag}, found {n}")
    m = _SHAPE.fullmatch(text)
    if m is None:
        return Parsed(False, reason="not <think>...</think><answer>...</answer> (or text after it)")
    blocks: dict[str, list[str]] = {}
    for lang, body in _FENCE.findall(m.group(2)):
        blocks.setdefault(lang.lower(), []).append(body.strip("\n").rstrip())
    rest = _FENCE.sub("", m.group(2))
    if rest.strip():
        return Parsed(False, reason=f"text outside code blocks in <answer>: {rest.strip()[:40]!r}")
    for lang, bodies in blocks.items():
        if expect.get(lang, 0) != len(bodies):
            return Parsed(
                False, reason=f"{len(bodies)} '{lang}' blocks, expected {expect.get(lang, 0)}"
            )
        if any(not b.strip() for b in bodies):
            return Parsed(False, reason=f"empty '{lang}' block")
    for lang, n in expect.items():
        if len(blocks.get(lang, [])) != n:
            return Parsed(False, reason=f"missing '{lang}' block")
    return Parsed(True, blocks, think=m.group(1).strip())


def parse_proposal(kind: str, text: str, program: Task | None, n_inputs: int, step: int = 0):
    """A proposer response -> (unvalidated Task or None, Parsed)."""
    if kind == "induction":
        p = parse_response(text, {"input": n_inputs, "message": 1})
        if not p.ok:
            return None, p
        inputs = [b.strip() for b in p.blocks["input"]]
        task = Task(kind, program.program, inputs, [], p.blocks["message"][0].strip(), step)
        return task, p
    p = parse_response(text, {"python": 1, "input": 1})
    if not p.ok:
        return None, p
    return Task(kind, p.blocks["python"][0], [p.blocks["input"][0].strip()], [], "", step), p


def parse_answer(kind: str, text: str) -> tuple[str | None, Parsed]:
    """A solver response -> (the answer block's text or None, Parsed)."""
    lang = SOLVER_BLOCK[kind]
    p = parse_response(text, {lang: 1})
    return (p.blocks[lang][0] if p.ok else None), p
