"""Stage-0 supervised data: shapes-world captions and VQA, plus Python source for plain LM.

Every example is a pure function of (seed, index), so a resumed run continues on exactly the
sample it would have seen. `collate` tokenises a batch with the backbone's processor and marks
which tokens carry loss: the assistant answer for chat examples, every token for code.

Left out on purpose: packing several examples into one row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unimodal.backbone import Backbone, Message, Prompt
from unimodal.data import render, sample_scene, train_caption, vqa_sample
from unimodal.presets import stdlib_code

CAPTION_QUESTION = "Describe the image."


@dataclass
class Example:
    """A chat turn to answer (messages + images + answer), or plain text for LM (`text`)."""

    messages: list[Message] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)
    answer: str = ""
    text: str = ""
    kind: str = "caption"  # caption | vqa | code
    qtype: str = ""


def image_turn(question: str) -> list[Message]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


def shapes_example(seed: int, index: int, kind: str, image_size: int) -> Example:
    """A captioning or VQA example drawn deterministically from (seed, index)."""
    if kind == "caption":
        rng = np.random.default_rng([seed, index])
        while True:  # some scenes (four mixed objects, held-out specs) have no caption
            scene = sample_scene(rng)
            try:
                text, _ = train_caption(scene, rng)
                break
            except ValueError:
                continue
        return Example(image_turn(CAPTION_QUESTION), [render(scene, image_size)], text)
    scene, qa = vqa_sample(seed, index)
    image = render(scene, image_size)
    return Example(image_turn(qa.question), [image], qa.answer, kind="vqa", qtype=qa.qtype)


def load_code_corpus(path: str | None, chunk_chars: int = 600) -> list[str]:
    """Python text for LM: standard-library sources, plus `code` fields of a JSONL if given."""
    sources = stdlib_code()
    if path:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"data.code_path: no such file: {p}")
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{p}:{n}: invalid JSON ({e.msg})") from None
                if "code" in row:
                    sources.append(row["code"])
    chunks = []
    for src in sources:
        lines, cur = src.splitlines(keepends=True), ""
        for line in lines:
            if len(cur) + len(line) > chunk_chars and cur.strip():
                chunks.append(cur)
                cur = ""
            cur += line
        if cur.strip():
            chunks.append(cur)
    return chunks


class Stage0Data:
    """The stage-0 mixture, indexable by global sample index."""

    def __init__(
        self,
        seed: int,
        image_size: int,
        weights: dict[str, float],
        code_path: str | None = None,
        chunk_chars: int = 600,
    ):
        self.seed, self.image_size = seed, image_size
        self.kinds = [k for k, w in weights.items() if w > 0]
        unknown = set(self.kinds) - {"caption", "vqa", "code"}
        if unknown or not self.kinds:
            raise ValueError(f"data.weights: kinds must be caption/vqa/code, got {sorted(weights)}")
        w = np.array([weights[k] for k in self.kinds], dtype=np.float64)
        self.probs = w / w.sum()
        self.code = load_code_corpus(code_path, chunk_chars) if "code" in self.kinds else []

    def __getitem__(self, index: int) -> Example:
        rng = np.random.default_rng([self.seed, index, 7])
        kind = self.kinds[int(rng.choice(len(self.kinds), p=self.probs))]
        if kind == "code":
            return Example(text=self.code[int(rng.integers(len(self.code)))], kind="code")
        return shapes_example(self.seed, index, kind, self.image_size)


def collate(backbone: Backbone, examples: list[Example]) -> tuple[Prompt, torch.Tensor]:
    """Tokenise a batch; returns the prompt and a loss mask (B, L) over target tokens."""
    tok = backbone.tokenizer
    eos = tok.eos_token
    texts, images, n_target = [], [], []
    for ex in examples:
        if ex.kind == "code":
            texts.append(ex.text + eos)
            images.append([])
            n_target.append(None)
        else:
            texts.append(backbone.render(ex.messages) + ex.answer + eos)
            images.append(ex.images)
            n_target.append(len(tok(ex.answer + eos, add_special_tokens=False)["input_ids"]))
    prompt = backbone.encode(texts, images if any(images) else None)
    mask = prompt.attention_mask.clone()
    length = mask.shape[1]
    for i, n in enumerate(n_target):
        if n is not None:
            mask[i, : length - n] = 0  # left padding: the answer is the last n tokens
    return prompt, mask


def lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the masked target tokens; logits (B, L, V)."""
    logits = logits[:, :-1].float()  # (B, L-1, V)
    target = input_ids[:, 1:]
    m = mask[:, 1:].float()
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
    return (ce * m).sum() / m.sum().clamp(min=1)
