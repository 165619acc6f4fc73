"""The judge API: render RM-R1 prompts, sample traces with the judge head, parse the verdicts.

`judge(backbone, prompt, answer_a, answer_b)` answers one pair; `judge_many` batches; both use
`parse_verdict`, the same parser the RL reward uses. A judge head is saved as a folder holding
`judge_lora.safetensors` and `judge_lora.json` (LoRA shape and prompt style); `load_head` adds
it to a backbone. `with_judge(pipe)` lets a `unimodal.pipeline.Pipeline` whose model folder
holds a `judge` head answer `pipe.judge(prompt, a, b)` with the same prompts and parser
(`RubricFormat`). Left out: self-consistency voting over several sampled traces.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from reasoning.rm_r1.prompts import STYLES, PromptStyle, judge_messages
from reasoning.rm_r1.verdict import Verdict, parse_verdict
from unimodal.backbone import Backbone, Message
from unimodal.lora_heads import LoraHeadConfig
from unimodal.sampling import sample

if TYPE_CHECKING:
    from unimodal.pipeline import Pipeline

PairInput = tuple[str | Sequence[Message], str, str]  # (prompt or conversation, A, B)


@dataclass(frozen=True)
class Judgement:
    """The parsed verdict ('A', 'B', or None for a format failure) and the full trace."""

    verdict: Verdict | None
    reasoning: str


@dataclass(frozen=True)
class HeadSpec(LoraHeadConfig):
    """A judge head: the shared LoRA-head config plus the prompt style (saved next to its
    weights; the `[judge]` config section)."""

    name: str = "judge"  # the LoRA head's name on the shared backbone
    style: str = "instruct"  # instruct (chain of rubrics) | distilled

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.style not in STYLES:
            raise ValueError(f"judge.style: unknown '{self.style}' ({' | '.join(STYLES)})")


def render_pairs(backbone: Backbone, pairs: Sequence[PairInput], style: PromptStyle) -> list[str]:
    """Judge prompts rendered with the backbone's chat template (generation prompt added)."""
    return [backbone.render(judge_messages(p, a, b, style)) for p, a, b in pairs]


@torch.no_grad()
def judge_many(
    backbone: Backbone,
    pairs: Sequence[PairInput],
    head: str | None = "judge",
    style: PromptStyle = "instruct",
    max_new_tokens: int = 1024,
    temperature: float = 0.0,
    batch_size: int = 8,
    generator: torch.Generator | None = None,
) -> list[Judgement]:
    """Judge each (prompt, A, B); `head=None` judges with the bare backbone (e.g. RM-R1 weights)."""
    texts = render_pairs(backbone, pairs, style)
    out: list[Judgement] = []
    with backbone.lora(head):
        for s in range(0, len(texts), batch_size):
            prompt = backbone.encode(texts[s : s + batch_size])
            res = sample(backbone, prompt, max_new_tokens, temperature, 1.0, generator)
            for ids, mask in zip(res.completion_ids, res.completion_mask):
                trace = backbone.tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
                out.append(Judgement(parse_verdict(trace), trace))
    return out


def judge(
    backbone: Backbone,
    prompt: str | Sequence[Message],
    answer_a: str,
    answer_b: str,
    head: str | None = "judge",
    style: PromptStyle = "instruct",
    max_new_tokens: int = 1024,
    temperature: float = 0.0,
) -> Judgement:
    """Which of two answers to `prompt` (a string or a conversation) is better, with reasons."""
    return judge_many(
        backbone, [(prompt, answer_a, answer_b)], head, style, max_new_tokens, temperature
    )[0]


def save_head(backbone: Backbone, spec: HeadSpec, folder: str | Path) -> Path:
    """Write the head's LoRA weights and spec into `folder`."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.contiguous() for k, v in backbone.lora_state_dict(spec.name).items()}
    save_file(weights, str(out / "judge_lora.safetensors"))
    (out / "judge_lora.json").write_text(json.dumps(asdict(spec), indent=2))
    return out


def read_spec(folder: str | Path) -> HeadSpec:
    raw = json.loads((Path(folder) / "judge_lora.json").read_text())
    return HeadSpec(**{**raw, "target_modules": tuple(raw["target_modules"])})


def load_head(backbone: Backbone, folder: str | Path, name: str | None = None) -> HeadSpec:
    """Add the head saved in `folder` to `backbone` (as `name`, default its saved name)."""
    p = Path(folder)
    if not (p / "judge_lora.safetensors").is_file():
        raise FileNotFoundError(f"no judge head in {p} (expected judge_lora.safetensors)")
    spec = read_spec(p)
    name = name or spec.name
    if name not in backbone.lora_names:
        backbone.add_lora(name, spec.r, spec.alpha, spec.dropout, spec.target_modules)
    state = load_file(str(p / "judge_lora.safetensors"))
    if name != spec.name:
        state = {k.replace(f".{spec.name}.", f".{name}."): v for k, v in state.items()}
    backbone.load_lora_state_dict(name, state)
    return spec


@dataclass(frozen=True)
class RubricFormat:
    """RM-R1's judge prompt and verdict parser, as a `unimodal.pipeline.JudgeFormat`."""

    style: PromptStyle = "instruct"

    def messages(self, prompt: str | Sequence[Message], answer_a: str, answer_b: str) -> list:
        return judge_messages(prompt, answer_a, answer_b, self.style)

    def parse(self, trace: str) -> Judgement:
        return Judgement(parse_verdict(trace), trace)


def with_judge(pipe: Pipeline, head: str = "judge", style: PromptStyle | None = None) -> Pipeline:
    """`pipe`, now able to `pipe.judge(prompt, a, b, head=head)`; the prompt style is the head's
    own (its `head.json`, written by tools/add_heads.py) unless given."""
    style = style or pipe.heads.get(head, {}).get("style", "instruct")
    if style not in STYLES:
        raise ValueError(f"judge style: unknown '{style}' ({' | '.join(STYLES)})")
    pipe.judge_format = RubricFormat(style)
    return pipe
