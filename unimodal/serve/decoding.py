"""Text decoding for the server: seeds, stop sequences and log-probabilities, piece by piece.

`decode(backbone, prompt, sampling)` samples one choice for a one-row prompt with the token
rule of `unimodal.sampling` (Gumbel-max over the temperature-scaled, top-p-truncated
distribution; greedy at temperature 0) but from its own `torch.Generator` seeded with
`sampling.seed`, so a seeded request gives the same text whatever else the server runs.
Log-probabilities are those of the model's distribution before temperature and top-p (vLLM's
default, "raw" log-probs), or after the temperature (`Sampling.processed`, vLLM's
`processed_logprobs`, without top-p renormalisation), floored at -9999 as OpenAI's are. Text
that could still be the start of a stop sequence is held back; a matched stop sequence is not
returned. Every piece carries the ids of the tokens it came from (the ending stop token too).

Left out on purpose: batching several choices into one decode (choices run one after another).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from unimodal.backbone import Backbone, Prompt
from unimodal.sampling import _decode_steps

FLOOR = -9999.0  # OpenAI's log-prob of a token too unlikely to represent


@dataclass
class Sampling:
    """How one choice is sampled."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    stop_ids: tuple[int, ...] = ()  # more token ids that end the choice (besides EOS)
    processed: bool = False  # log-probs after the temperature (else the raw model's)


@dataclass
class TokenLogprob:
    """One token: its text, its UTF-8 bytes, its log-prob (None for a prompt's first token)
    and the `top` alternatives."""

    token: str
    bytes: list[int]
    logprob: float | None
    top: list[tuple[str, list[int], float]] = field(default_factory=list)
    id: int = -1
    top_ids: list[int] = field(default_factory=list)


@dataclass
class Piece:
    """New text of a choice and the tokens that produced it (when log-probs are asked for)."""

    text: str
    logprobs: list[TokenLogprob]
    ids: list[int] = field(default_factory=list)


@dataclass
class Finish:
    reason: str  # "stop" (EOS or a stop sequence) or "length"
    completion_tokens: int  # tokens sampled, EOS included
    prompt_tokens: int


def _byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's byte-to-unicode table (byte-level BPE token text -> bytes)."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(keep, chars)}


BYTES = _byte_decoder()


def token_text(tokenizer: object, token_id: int) -> tuple[str, list[int]]:
    """(text, UTF-8 bytes) of one token; a token holding part of a character shows U+FFFD."""
    piece = tokenizer.convert_ids_to_tokens(token_id)
    if isinstance(piece, str) and piece and all(c in BYTES for c in piece):
        raw = bytes(BYTES[c] for c in piece)
    else:
        raw = tokenizer.decode([token_id]).encode("utf-8")
    return raw.decode("utf-8", "replace"), list(raw)


def _info(
    tokenizer: object, logits: torch.Tensor, token_id: int, k: int, temperature: float = 1.0
) -> TokenLogprob:
    logp = torch.log_softmax(logits.float() / temperature, -1)  # (V,)
    top, top_ids = [], []
    if k:
        values, ids = logp.topk(k)
        for v, i in zip(values.tolist(), ids.tolist()):
            top.append((*token_text(tokenizer, i), max(v, FLOOR)))
        top_ids = ids.tolist()
    text, raw = token_text(tokenizer, token_id)
    return TokenLogprob(text, raw, max(float(logp[token_id]), FLOOR), top, token_id, top_ids)


def _steps(
    backbone: Backbone, prompt: Prompt, sp: Sampling, cancel: threading.Event | None
) -> Iterator[tuple[torch.Tensor, int]]:
    """Yield (logits (V,), sampled token id) step by step; stops early when `cancel` is set."""
    gen = torch.Generator(device=prompt.input_ids.device).manual_seed(sp.seed)
    steps = _decode_steps(
        backbone, prompt, sp.max_tokens, sp.temperature, sp.top_p, gen, compact=False
    )
    for tok, _, _, logits in steps:
        if cancel is not None and cancel.is_set():
            return
        yield logits[0], int(tok[0])


def stop_at(text: str, stops: tuple[str, ...], start: int = 0) -> int | None:
    """Where the first stop sequence begins in `text` (searching from about `start`), or None."""
    found = [i for s in stops if (i := text.find(s, max(0, start - len(s) + 1))) >= 0]
    return min(found) if found else None


def held(text: str, stops: tuple[str, ...]) -> int:
    """How many characters at the end of `text` could be the start of a stop sequence."""
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:k]):
                hold = k
                break
    return hold


@torch.no_grad()
def decode(
    backbone: Backbone, prompt: Prompt, sp: Sampling, cancel: threading.Event | None = None
) -> Iterator[Piece | Finish]:
    """Pieces of one choice's text, then its `Finish` (not reached when `cancel` is set)."""
    tokenizer, eos = backbone.tokenizer, set(backbone.eos_token_ids) | set(sp.stop_ids)
    temperature = sp.temperature if sp.processed and sp.temperature > 0 else 1.0
    ids: list[int] = []
    infos: list[TokenLogprob] = []
    new: list[int] = []  # ids not yet sent with a piece
    text = clean = ""  # all decoded text / the longest prefix not ending in a partial character
    shown, count, reason = 0, 0, "length"
    for logits, t in _steps(backbone, prompt, sp, cancel):
        count += 1
        new.append(t)
        if sp.logprobs:
            infos.append(_info(tokenizer, logits, t, sp.top_logprobs, temperature))
        if t in eos:
            reason = "stop"
            break
        ids.append(t)
        text = tokenizer.decode(ids, skip_special_tokens=True)
        if (cut := stop_at(text, sp.stop, shown)) is not None:
            clean, reason = text[:cut], "stop"
            break
        if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for more
            continue
        clean = text
        safe = len(text) - held(text, sp.stop)
        if safe > shown:
            yield Piece(text[shown:safe], infos, new)
            infos, new, shown = [], [], safe
    else:
        if cancel is not None and cancel.is_set():
            return
    if len(clean) > shown or infos or new:
        yield Piece(clean[shown:], infos, new)
    yield Finish(reason, count, int(prompt.input_ids.shape[-1]))


@torch.no_grad()
def prompt_logprobs(backbone: Backbone, prompt: Prompt, k: int) -> list[TokenLogprob]:
    """Log-prob of each prompt token given the ones before it (None for the first), top `k`."""
    logits = backbone.logits(prompt)[0]  # (L, V)
    ids = prompt.input_ids[0].tolist()
    out = [TokenLogprob(*token_text(backbone.tokenizer, ids[0]), None, id=ids[0])]
    for i in range(1, len(ids)):
        out.append(_info(backbone.tokenizer, logits[i - 1], ids[i], k))
    return out
