"""Preference pairs for the judge: readers, and A/B placement balanced by construction.

Formats read:
- pairs JSONL: `prompt` (a string) or `conversation` (a list of {role, content} ending with a
  user turn), `chosen`, `rejected`, optional `domain` and `id`;
- hh-rlhf JSONL(.gz): `chosen` / `rejected` full "\\n\\nHuman: ... \\n\\nAssistant: ..."
  transcripts that share every turn but the last assistant one;
- RM-Bench JSON (`{chat,code,math,safety-*}_filtered.json`): each item has 3 chosen and 3
  rejected responses in the styles concise / detailed plain / detailed markdown;
- judge traces JSONL (stage 1): a pair shown as `answer_a` / `answer_b`, the `trace` with its
  tags, and the `verdict` ("A" or "B") that the trace must parse to.

Left out: images in the judged conversations.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reasoning.rm_r1.prompts import PromptStyle, as_conversation, judge_messages
from reasoning.rm_r1.verdict import Verdict, parse_verdict
from unimodal.backbone import Message


@dataclass(frozen=True)
class PreferencePair:
    """A prompt (or conversation ending with a user turn) and two responses, one preferred."""

    prompt: str | tuple[Message, ...]
    chosen: str
    rejected: str
    domain: str = "general"
    id: str = ""


@dataclass(frozen=True)
class JudgeItem:
    """A pair placed in the A/B positions; `label` is the position of the chosen response."""

    pair: PreferencePair
    answer_a: str
    answer_b: str
    label: Verdict


@dataclass(frozen=True)
class TraceExample:
    """A distillation target: the pair as shown (A, B) and the judge trace to imitate.

    `messages`, when given, is the judge's whole input as chat messages (e.g. a teacher's
    prompt, used verbatim); otherwise the prompt is rendered from (prompt, answer_a, answer_b).
    """

    prompt: str | tuple[Message, ...]
    answer_a: str
    answer_b: str
    trace: str
    verdict: Verdict
    messages: tuple[Message, ...] = ()

    def judge_input(self, style: PromptStyle) -> list[Message]:
        """The chat messages the judge sees for this example."""
        if self.messages:
            return list(self.messages)
        return judge_messages(self.prompt, self.answer_a, self.answer_b, style)


@dataclass(frozen=True)
class RMBenchItem:
    """One RM-Bench prompt with chosen / rejected responses in 3 styles (index 0, 1, 2)."""

    id: str
    prompt: str
    chosen: tuple[str, str, str]
    rejected: tuple[str, str, str]
    domain: str
    subset: str


def place(pair: PreferencePair, chosen_first: bool) -> JudgeItem:
    """Put the chosen response at A (`chosen_first`) or at B."""
    if chosen_first:
        return JudgeItem(pair, pair.chosen, pair.rejected, "A")
    return JudgeItem(pair, pair.rejected, pair.chosen, "B")


class PairStream:
    """Pairs indexed by global sample index: a fresh permutation each epoch, A/B alternating.

    Position `k` of epoch `e` puts the chosen response at A iff `(k + e)` is even, so any run of
    an even number of consecutive indices is exactly half A, half B; a resumed run continues on
    exactly the item it would have seen.
    """

    def __init__(self, pairs: Sequence[PreferencePair], seed: int = 0):
        if not pairs:
            raise ValueError("no preference pairs to train on")
        self.pairs, self.seed = list(pairs), seed

    def __len__(self) -> int:
        return len(self.pairs)

    def position(self, index: int) -> tuple[int, bool]:
        """(which pair, whether its chosen response goes to A) for global sample `index`."""
        epoch, k = divmod(index, len(self.pairs))
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.pairs))
        return int(perm[k]), (k + epoch) % 2 == 0

    def __getitem__(self, index: int) -> JudgeItem:
        i, chosen_first = self.position(index)
        return place(self.pairs[i], chosen_first)


def _rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}:{n}: invalid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{p}:{n}: expected a JSON object")
            yield n, row


def _prompt(row: dict[str, Any], where: str) -> str | tuple[Message, ...]:
    if "conversation" in row:
        try:
            return tuple(as_conversation(row["conversation"]))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{where}: bad conversation ({e})") from None
    if isinstance(row.get("prompt"), str):
        return row["prompt"]
    raise ValueError(f"{where}: needs 'prompt' (a string) or 'conversation' (a list of turns)")


_TURN = re.compile(r"\n\n(Human|Assistant): ")


def split_hh_transcript(text: str) -> list[Message]:
    """'\\n\\nHuman: ..\\n\\nAssistant: ..' into turns (content stripped)."""
    parts = _TURN.split(text)
    if parts[0].strip():
        raise ValueError("transcript does not start with a Human/Assistant turn")
    role = {"Human": "user", "Assistant": "assistant"}
    return [
        {"role": role[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)
    ]


def hh_pair(chosen: str, rejected: str, id: str = "") -> PreferencePair | None:
    """A pair from two hh-rlhf transcripts, or None if they differ before the last reply."""
    c, r = split_hh_transcript(chosen), split_hh_transcript(rejected)
    if len(c) < 2 or c[:-1] != r[:-1] or c[-1]["role"] != "assistant" or len(c) != len(r):
        return None
    if r[-1]["role"] != "assistant" or c[-1]["content"] == r[-1]["content"]:
        return None
    context = tuple(c[:-1])
    prompt = context[0]["content"] if len(context) == 1 else context
    return PreferencePair(prompt, c[-1]["content"], r[-1]["content"], "harmless", id)


def read_preference_file(path: str | Path, domain: str = "general") -> list[PreferencePair]:
    """Pairs from a pairs JSONL or an hh-rlhf JSONL(.gz) (told apart row by row).

    hh-rlhf rows whose transcripts diverge before the final reply (or are identical) are
    skipped; a malformed pairs row is an error naming its line.
    """
    out = []
    for n, row in _rows(path):
        where = f"{path}:{n}"
        for key in ("chosen", "rejected"):
            if not isinstance(row.get(key), str):
                raise ValueError(f"{where}: '{key}' must be a string")
        if "prompt" not in row and "conversation" not in row:
            pair = hh_pair(row["chosen"], row["rejected"], str(row.get("id", n)))
            if pair is not None:
                out.append(pair)
            continue
        prompt = _prompt(row, where)
        out.append(
            PreferencePair(
                prompt,
                row["chosen"],
                row["rejected"],
                str(row.get("domain", domain)),
                str(row.get("id", n)),
            )
        )
    return out


def read_rm_bench(path: str | Path, domains: Sequence[str] | None = None) -> list[RMBenchItem]:
    """RM-Bench items from one `*_filtered.json` file or a folder of them.

    The domain is the item's `domain` field if present, else the file name (`chat_filtered`
    -> chat); both safety files count as `safety`, as RM-Bench reports them.
    """
    p = Path(path)
    files = sorted(p.glob("*.json")) if p.is_dir() else [p]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"no RM-Bench JSON files at {p}")
    items = []
    for f in files:
        for k, row in enumerate(json.loads(f.read_text(encoding="utf-8"))):
            domain = str(row.get("domain", f.stem.removesuffix("_filtered"))).split("-")[0]
            if domains and domain not in domains:
                continue
            chosen, rejected = row["chosen"], row["rejected"]
            if len(chosen) != 3 or len(rejected) != 3:
                raise ValueError(f"{f}[{k}]: expected 3 chosen and 3 rejected responses")
            items.append(
                RMBenchItem(
                    str(row.get("id", k)),
                    row["prompt"],
                    tuple(chosen),
                    tuple(rejected),
                    domain,
                    str(row.get("subset", "")),
                )
            )
    return items


def read_traces(path: str | Path) -> list[TraceExample]:
    """Judge traces for distillation; a trace that does not parse to its verdict is an error.

    A row is `trace` + `verdict` plus either `messages` (the judge input, verbatim) or the pair
    as shown: `prompt` / `conversation`, `answer_a`, `answer_b`.
    """
    out = []
    for n, row in _rows(path):
        where = f"{path}:{n}"
        need = ("trace", "verdict") if "messages" in row else ("answer_a", "answer_b", "trace")
        missing = [k for k in (*need, "verdict") if k not in row]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(dict.fromkeys(missing))}")
        if row["verdict"] not in ("A", "B"):
            raise ValueError(f"{where}: verdict must be 'A' or 'B', got {row['verdict']!r}")
        if parse_verdict(row["trace"]) != row["verdict"]:
            raise ValueError(f"{where}: the trace does not parse to its verdict {row['verdict']}")
        if "messages" in row:
            msgs = tuple({"role": m["role"], "content": m["content"]} for m in row["messages"])
            out.append(TraceExample("", "", "", row["trace"], row["verdict"], msgs))
            continue
        out.append(
            TraceExample(
                _prompt(row, where), row["answer_a"], row["answer_b"], row["trace"], row["verdict"]
            )
        )
    return out


def _jsonable_prompt(prompt: str | tuple[Message, ...]) -> dict[str, Any]:
    return {"prompt": prompt} if isinstance(prompt, str) else {"conversation": list(prompt)}


def write_pairs(path: str | Path, pairs: Sequence[PreferencePair]) -> None:
    """Write pairs in the pairs JSONL format (readable by `read_preference_file`)."""
    rows = [
        {
            **_jsonable_prompt(p.prompt),
            "chosen": p.chosen,
            "rejected": p.rejected,
            "domain": p.domain,
            "id": p.id,
        }
        for p in pairs
    ]
    Path(path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_traces(path: str | Path, traces: Sequence[TraceExample]) -> None:
    """Write judge traces in the format `read_traces` reads."""
    rows = []
    for t in traces:
        shown = (
            {"messages": list(t.messages)}
            if t.messages
            else {**_jsonable_prompt(t.prompt), "answer_a": t.answer_a, "answer_b": t.answer_b}
        )
        rows.append({**shown, "trace": t.trace, "verdict": t.verdict})
    Path(path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
