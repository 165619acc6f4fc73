"""The one verdict parser of RM-R1 judge traces, and the verifiable reward built on it.

A trace is well-formed when it holds exactly one `<answer>...</answer>` block, nothing but
whitespace follows that block, and the block contains exactly one verdict token: `[[A]]` or
`[[B]]` (once, and not both). Anything else is a format failure (`None`). Training (the reward)
and evaluation (accuracy) both call `parse_verdict`, so the two can never disagree.

Reward (RM-R1, the correctness reward of its RLVR stage): +1 when the verdict names the
preferred answer, -1 otherwise; a format failure is also -1. Left out: the format-reward variants
in RM-R1's released code. Stricter than that code (which looks for `<answer>[[A]]</answer>` in
the last 80 characters): text after the answer, or a second answer block, is a failure.
"""

from __future__ import annotations

import re
from typing import Literal

Verdict = Literal["A", "B"]

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_VERDICT = re.compile(r"\[\[([AB])\]\]")


def parse_verdict(text: str) -> Verdict | None:
    """'A' or 'B' from a judge trace, or None when the final answer is malformed."""
    blocks = list(_ANSWER.finditer(text))
    if len(blocks) != 1 or text.count("<answer>") != 1 or text.count("</answer>") != 1:
        return None
    block = blocks[0]
    if text[block.end() :].strip():
        return None  # the answer must be the last thing the judge says
    found = _VERDICT.findall(block.group(1))
    return found[0] if len(found) == 1 else None  # type: ignore[return-value]


def verdict_reward(verdict: Verdict | None, label: Verdict) -> float:
    """+1 if the verdict matches the preferred position `label`, else -1 (failures included)."""
    return 1.0 if verdict is not None and verdict == label else -1.0


def trace_reward(text: str, label: Verdict) -> float:
    """The RLVR reward of one sampled trace: `verdict_reward(parse_verdict(text), label)`."""
    return verdict_reward(parse_verdict(text), label)
