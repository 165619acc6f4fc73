"""RM-R1 judge prompts: chain of rubrics for instruct models, a short instruction for distilled ones.

Instruct style (RM-R1, Sec. 3.2 "chain-of-rubrics"): a system prompt asks the judge to classify
the task as `<type>Chat</type>` or `<type>Reasoning</type>`; for Chat it writes weighted rubric
items with justifications and then an evaluation quoting both answers; for Reasoning it first
writes its own `<solution>` and then compares; it ends with `<answer>[[A]]</answer>` or
`<answer>[[B]]</answer>`. Distilled style (for reasoning-distilled models, which think on their
own): no system prompt, a short impartial-judge instruction, same final answer format.

A single-turn input shows the question and both responses; a multi-turn input is shown as two
full transcripts, one per chatbot, differing only in the final assistant turn. Left out: images
in the judged conversation (the judge sees text only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from unimodal.backbone import Message

PromptStyle = Literal["instruct", "distilled"]
STYLES: tuple[str, ...] = ("instruct", "distilled")

CHAIN_OF_RUBRICS = """\
You are an impartial judge. A client asked a question (or held a conversation), and two \
chatbots, A and B, each gave a response. Decide which response is better.

First classify the task. Write <type>Reasoning</type> if it has a result that can be worked out \
and checked (mathematics, code, logic); otherwise write <type>Chat</type>.

If the task is Chat:
1. Inside <rubric>...</rubric>, list numbered evaluation criteria for this particular request, \
each with a weight (the weights add up to 100%), and explain inside <justify>...</justify> why \
these criteria and weights fit the client's needs.
2. Inside <eval>...</eval>, compare the two responses criterion by criterion, quoting them \
directly: <quote_A>...</quote_A> for Chatbot A and <quote_B>...</quote_B> for Chatbot B.

If the task is Reasoning:
1. Solve the problem yourself first, inside <solution>...</solution>.
2. Inside <eval>...</eval>, check each response against your solution, quoting them with \
<quote_A>...</quote_A> and <quote_B>...</quote_B>, and say where each is right or wrong.

Do not let the length, style or order of the responses sway you. End with exactly \
<answer>[[A]]</answer> if Chatbot A is better, or <answer>[[B]]</answer> if Chatbot B is \
better, and write nothing after it."""

DISTILLED_INSTRUCTION = """\
Please act as an impartial judge and decide which of the two chatbot responses below serves the \
client better. Think it through carefully (correctness first, then helpfulness and safety), and \
do not let the length, style or order of the responses sway you. End with your verdict in \
exactly this form: <answer>[[A]]</answer> if Chatbot A is better, or <answer>[[B]]</answer> if \
Chatbot B is better."""

_ROLE = {"user": "User", "system": "System"}


def as_conversation(prompt: str | Sequence[Message]) -> list[Message]:
    """A prompt string becomes one user turn; a conversation must end with a user turn."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    turns = [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
    if not turns or turns[-1]["role"] != "user":
        raise ValueError("a judged conversation must end with a user turn")
    bad = {t["role"] for t in turns} - {"user", "assistant", "system"}
    if bad:
        raise ValueError(f"unknown conversation roles {sorted(bad)}")
    return turns


def _transcript(turns: list[Message], bot: str, response: str) -> str:
    lines = [
        f"{_ROLE.get(t['role'], f'Chatbot {bot}')}: {t['content']}"
        for t in [*turns, {"role": "assistant", "content": response}]
    ]
    return (
        f"[The Start of the Conversation between Chatbot {bot} and the Client]\n"
        + "\n".join(lines)
        + f"\n[The End of the Conversation between Chatbot {bot} and the Client]"
    )


def pair_text(prompt: str | Sequence[Message], answer_a: str, answer_b: str) -> str:
    """The judged material: question + both responses, or two full transcripts (multi-turn)."""
    turns = as_conversation(prompt)
    if len(turns) == 1:
        return (
            f"[Client Question]\n{turns[0]['content']}\n\n"
            f"[The Start of Chatbot A's Response]\n{answer_a}\n[The End of Chatbot A's Response]"
            f"\n\n[The Start of Chatbot B's Response]\n{answer_b}\n"
            "[The End of Chatbot B's Response]"
        )
    return _transcript(turns, "A", answer_a) + "\n\n" + _transcript(turns, "B", answer_b)


def judge_messages(
    prompt: str | Sequence[Message], answer_a: str, answer_b: str, style: PromptStyle = "instruct"
) -> list[Message]:
    """The chat messages given to the judge (render them with `Backbone.render`)."""
    body = pair_text(prompt, answer_a, answer_b)
    if style == "instruct":
        return [
            {"role": "system", "content": CHAIN_OF_RUBRICS},
            {"role": "user", "content": body},
        ]
    if style == "distilled":
        return [{"role": "user", "content": f"{DISTILLED_INSTRUCTION}\n\n{body}"}]
    raise ValueError(f"unknown judge prompt style '{style}' (instruct | distilled)")
