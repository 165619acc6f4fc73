"""Where each RM-R1 stage gets its data, as configured: files, or procedural verifiable pairs.

Stage 1 (SFT) reads judge traces from a JSONL, or templates traces for procedural pairs placed
A/B-balanced by `PairStream`; stage 2 (RL) reads a preference file (pairs JSONL or hh-rlhf), or
uses the procedural pairs' labels. Examples longer than `max_tokens` once rendered are dropped.
Evaluation uses a file's first n pairs, or procedural pairs from a held-out seed whose prompts
training never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

from reasoning.rm_r1.data import (
    PairStream,
    PreferencePair,
    TraceExample,
    place,
    read_preference_file,
    read_traces,
)
from reasoning.rm_r1.procedural import KINDS, VerifiablePair, make_pairs, trace_example
from reasoning.rm_r1.prompts import PromptStyle, judge_messages
from unimodal.backbone import Backbone

HELD_OUT_SEED = 1_000_003


@dataclass
class DataConfig:
    pairs: str = ""  # RL pairs: pairs JSONL or hh-rlhf .jsonl(.gz); "" = procedural pairs
    traces: str = ""  # SFT judge traces JSONL; "" = templated traces of procedural pairs
    kinds: tuple[str, ...] = KINDS  # procedural pair kinds: arithmetic, program
    n_procedural: int = 2000
    max_operand: int = 20
    max_ops: int = 2
    max_tokens: int = 4096  # SFT examples (prompt + trace) longer than this are dropped
    max_prompt_tokens: int = 4096  # RL judge prompts longer than this are dropped


def procedural(cfg: DataConfig, n: int, seed: int) -> list[VerifiablePair]:
    return make_pairs(n, seed, cfg.kinds, None, cfg.max_operand, cfg.max_ops)


def _fits(backbone: Backbone, texts: list[str], max_tokens: int) -> list[bool]:
    return [len(ids) <= max_tokens for ids in backbone.tokenizer(texts)["input_ids"]]


class SFTSource:
    """Global sample index -> TraceExample (A/B alternating for procedural pairs)."""

    def __init__(self, cfg: DataConfig, backbone: Backbone, style: PromptStyle, seed: int):
        self.file = bool(cfg.traces)
        if self.file:
            pool: list = read_traces(cfg.traces)
            examples = pool
        else:
            pool = procedural(cfg, cfg.n_procedural, seed)
            examples = [trace_example(v, place(v.pair, True)) for v in pool]
        texts = [backbone.render(t.judge_input(style)) + t.trace for t in examples]
        keep = _fits(backbone, texts, cfg.max_tokens)
        self.pool = [p for p, ok in zip(pool, keep) if ok]
        self.stream = PairStream(self.pool, seed)
        self.prompts = {str(t.prompt) for t in examples}

    def __getitem__(self, index: int) -> TraceExample:
        k, chosen_first = self.stream.position(index)
        if self.file:
            return self.pool[k]
        return trace_example(self.pool[k], place(self.pool[k].pair, chosen_first))


def rl_pairs(
    cfg: DataConfig, backbone: Backbone, style: PromptStyle, seed: int
) -> list[PreferencePair]:
    """Labelled pairs for RLVR (those whose rendered judge prompt fits `max_prompt_tokens`)."""
    if cfg.pairs:
        pairs = read_preference_file(cfg.pairs)
    else:
        pairs = [v.pair for v in procedural(cfg, cfg.n_procedural, seed)]
    texts = [backbone.render(judge_messages(p.prompt, p.chosen, p.rejected, style)) for p in pairs]
    return [p for p, ok in zip(pairs, _fits(backbone, texts, cfg.max_prompt_tokens)) if ok]


def held_out_pairs(
    cfg: DataConfig, n: int, exclude: set[str], path: str = ""
) -> tuple[list[PreferencePair], list[tuple[str, str]]]:
    """A file's first n pairs, or n procedural pairs with prompts not in `exclude`; and for
    procedural pairs their (right, wrong) answers (none for a file)."""
    if path:
        return read_preference_file(path)[:n], []
    kept = [v for v in procedural(cfg, 4 * n, HELD_OUT_SEED) if str(v.pair.prompt) not in exclude]
    return [v.pair for v in kept[:n]], [(v.correct, v.wrong) for v in kept[:n]]
