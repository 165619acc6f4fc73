"""Stage-0 supervised data: shapes-world captions and VQA, plus Python source and
copy texts (recall, repeat, words: `unimodal/data/recall.py`) for plain LM.

Every example is a pure function of (seed, index), so a resumed run continues on exactly the
sample it would have seen. `collate` tokenises a batch with the backbone's processor and marks
which tokens carry loss: the assistant answer for chat examples, every token of plain text.

Left out on purpose: packing several examples into one row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unimodal.backbone import Backbone, Message, Prompt
from unimodal.data import (
    QTYPES,
    Scene,
    questions,
    render,
    sample_scene,
    train_caption,
    vqa_sample,
)
from unimodal.data.recall import COPY_TEXTS, words_text
from unimodal.presets import CODE_MODULES, HELDOUT_CODE_MODULES, stdlib_code

CAPTION_QUESTION = "Describe the image."
OBJECTS_QUESTION = "List the objects from left to right."
KINDS = ("caption", "objects", "vqa", "code", "recall", "repeat", "words")
TEXT_KINDS = ("code", "recall", "repeat", "words")  # plain LM text, no chat template


@dataclass
class Example:
    """A chat turn to answer (messages + images + answer), or plain text for LM (`text`)."""

    messages: list[Message] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)
    answer: str = ""
    text: str = ""
    kind: str = "caption"  # one of KINDS
    qtype: str = ""
    scene: Scene | None = None  # the shapes-world scene of the image (vision_probe.py)


def image_turn(question: str) -> list[Message]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


def shapes_example(
    seed: int, index: int, kind: str, image_size: int, qa_per_image: int = 1
) -> Example:
    """A captioning or VQA example drawn deterministically from (seed, index); a VQA example
    asks up to `qa_per_image` questions about its image, as turns of one conversation; an
    `objects` example names every object (colour and shape) from left to right."""
    if kind == "objects":
        scene = sample_scene(np.random.default_rng([seed, index, 5]))
        names = [f"{o.color} {o.shape}" for o in sorted(scene.objects, key=lambda o: o.cx)]
        image = render(scene, image_size)
        turn = image_turn(OBJECTS_QUESTION)
        return Example(turn, [image], ", ".join(names), kind="objects", scene=scene)
    if kind == "caption":
        rng = np.random.default_rng([seed, index])
        while True:  # some scenes (four mixed objects, held-out specs) have no caption
            scene = sample_scene(rng)
            try:
                text, _ = train_caption(scene, rng)
                break
            except ValueError:
                continue
        image = render(scene, image_size)
        return Example(image_turn(CAPTION_QUESTION), [image], text, scene=scene)
    scene, qa = vqa_sample(seed, index)
    image = render(scene, image_size)
    qas = [qa]
    if qa_per_image > 1:
        rng = np.random.default_rng([seed, index, 3])
        more = [q for t in QTYPES for q in questions(scene, t) if q != qa]
        qas += [more[i] for i in rng.permutation(len(more))[: qa_per_image - 1]]
    messages = image_turn(qas[0].question)
    for prev, q in zip(qas, qas[1:]):  # earlier answers are turns of the conversation
        messages += [
            {"role": "assistant", "content": prev.answer},
            {"role": "user", "content": q.question},
        ]
    qa = qas[-1]
    return Example(messages, [image], qa.answer, kind="vqa", qtype=qa.qtype, scene=scene)


def load_code_corpus(path: str | None, chunk_chars: int = 600) -> list[str]:
    """Python text for LM: standard-library sources (`CODE_MODULES`, never the held-out ones),
    plus `code` fields of a JSONL if given."""
    sources = stdlib_code(CODE_MODULES)
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
    return chunk_sources(sources, chunk_chars)


def chunk_sources(sources: list[str], chunk_chars: int) -> list[str]:
    """Sources cut at line ends into chunks of at most `chunk_chars` characters."""
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


def word_pool(tokenizer: Any) -> list[str]:
    """Every token of a Hugging Face `tokenizer` as text, less the special and added ones (chat
    and vision markers) and any holding a line break. A `words` line of them is a random-token
    sequence (re-split the same way in both lines), the data on which a copy (induction)
    circuit forms (README, stage 0); identifiers alone formed one that copied only identifiers."""
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    texts = (tokenizer.decode([i]) for i in range(len(tokenizer)) if i not in special)
    return sorted({t for t in texts if t.strip() and "\n" not in t and "\ufffd" not in t})


def heldout_code(chunk_chars: int = 600) -> list[str]:
    """Chunks of the standard-library modules stage 0 and the tokenizer never see."""
    return chunk_sources(stdlib_code(HELDOUT_CODE_MODULES), chunk_chars)


def mixture(weights: dict[str, float], field: str = "data.weights") -> tuple[list[str], np.ndarray]:
    """The kinds with a positive weight and their probabilities (ValueError naming `field`)."""
    kinds = [k for k, w in weights.items() if w > 0]
    if set(kinds) - set(KINDS) or not kinds:
        raise ValueError(f"{field}: kinds must be among {KINDS}, got {sorted(weights)}")
    w = np.array([weights[k] for k in kinds], dtype=np.float64)
    return kinds, w / w.sum()


class Stage0Data:
    """The stage-0 mixture, indexable by global sample index; the first `first_samples` samples
    draw from `first_weights` instead (a curriculum phase, e.g. `words` alone to form a copy
    circuit before the mixture)."""

    def __init__(
        self,
        seed: int,
        image_size: int,
        weights: dict[str, float],
        code_path: str | None = None,
        chunk_chars: int = 600,
        qa_per_image: int = 1,
        first_weights: dict[str, float] | None = None,
        first_samples: int = 0,
        tokenizer: Any = None,
    ):
        self.seed, self.image_size, self.qa_per_image = seed, image_size, qa_per_image
        self.kinds, self.probs = mixture(weights)
        self.first_samples = first_samples if first_weights else 0
        self.first = mixture(first_weights, "data.first_weights") if self.first_samples else None
        used = set(self.kinds) | set(self.first[0] if self.first else [])
        self.code = load_code_corpus(code_path, chunk_chars) if "code" in used else []
        if "words" in used and tokenizer is None:
            raise ValueError(
                "data.weights / data.first_weights: `words` needs a word pool (tokenizer)"
            )
        self.words = word_pool(tokenizer) if "words" in used else []

    def __getitem__(self, index: int) -> Example:
        rng = np.random.default_rng([self.seed, index, 7])
        kinds, probs = self.first if index < self.first_samples else (self.kinds, self.probs)
        kind = kinds[int(rng.choice(len(kinds), p=probs))]
        if kind == "code":
            return Example(text=self.code[int(rng.integers(len(self.code)))], kind="code")
        if kind == "words":
            return Example(text=words_text(self.seed, index, self.words), kind="words")
        if kind in COPY_TEXTS:
            return Example(text=COPY_TEXTS[kind][0](self.seed, index), kind=kind)
        return shapes_example(self.seed, index, kind, self.image_size, self.qa_per_image)


def collate(backbone: Backbone, examples: list[Example]) -> tuple[Prompt, torch.Tensor]:
    """Tokenise a batch; returns the prompt and a loss mask (B, L) over target tokens: every
    token of plain text (code, recall, repeat), the second line of a `words` text, every
    assistant answer (with its end token) of a chat example."""
    eos = backbone.tokenizer.eos_token
    texts, images = [], []
    for ex in examples:
        chat = ex.kind not in TEXT_KINDS
        texts.append(backbone.render(ex.messages) + ex.answer + eos if chat else ex.text + eos)
        images.append(ex.images if chat else [])
    prompt = backbone.encode(texts, images if any(images) else None)
    mask = prompt.attention_mask.clone()
    header = assistant_header(backbone)
    end = backbone.tokenizer.convert_tokens_to_ids(eos)
    newline = backbone.tokenizer("\n", add_special_tokens=False)["input_ids"][-1]
    for i, ex in enumerate(examples):
        if ex.kind not in TEXT_KINDS:
            mask[i] = answer_spans(prompt.input_ids[i].tolist(), header, end)
        elif ex.kind == "words":  # the copy only: the first line is noise by construction
            first = (prompt.input_ids[i] == newline).nonzero()
            mask[i, : int(first[0]) + 1 if len(first) else mask.shape[1]] = 0
    return prompt, mask


def assistant_header(backbone: Backbone) -> list[int]:
    """Token ids the chat template puts before an assistant answer (its generation prompt)."""
    turn = [{"role": "user", "content": "x"}]
    full, bare = backbone.render(turn), backbone.render(turn, add_generation_prompt=False)
    if not full.startswith(bare) or full == bare:
        raise ValueError(f"{backbone.path}: chat template has no assistant generation prompt")
    return backbone.tokenizer(full[len(bare) :], add_special_tokens=False)["input_ids"]


def answer_spans(ids: list[int], header: list[int], end: int) -> torch.Tensor:
    """1 on each token after an assistant header up to and including the next `end` token."""
    out, n, i = torch.zeros(len(ids), dtype=torch.long), len(header), 0
    while i + n <= len(ids):
        if ids[i : i + n] != header:
            i += 1
            continue
        i += n
        while i < len(ids):
            out[i] = 1
            i += 1
            if ids[i - 1] == end:
                break
    return out


def token_ce(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor):
    """Next-token cross-entropy (B, L-1) and its target mask (B, L-1); logits (B, L, V)."""
    target = input_ids[:, 1:]
    ce = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), target, reduction="none"
    )
    return ce, mask[:, 1:].float()


def lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the masked target tokens; logits (B, L, V)."""
    ce, m = token_ce(logits, input_ids, mask)
    return (ce * m).sum() / m.sum().clamp(min=1)


def kind_losses(
    logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor, kinds: list[str]
) -> dict[str, torch.Tensor]:
    """`loss`, what trains: each example's mean target-token cross-entropy, averaged over the
    examples (so a 100-token code chunk weighs as much as a one-word VQA answer, and the mixture
    weights alone set each kind's share); and `loss_<kind>` per kind present (caption, vqa,
    code; per token, detached, for the curves)."""
    ce, m = token_ce(logits, input_ids, mask)
    return row_losses((ce * m).sum(1), m.sum(1), kinds)


def row_losses(
    per_row: torch.Tensor, n_row: torch.Tensor, kinds: list[str]
) -> dict[str, torch.Tensor]:
    """`kind_losses` from each row's summed target cross-entropy (B,) and target count (B,)."""
    out = {"loss": (per_row / n_row.clamp(min=1)).mean()}
    per_row = per_row.detach()
    for kind in sorted(set(kinds)):
        rows = torch.tensor([k == kind for k in kinds], device=per_row.device)
        out[f"loss_{kind}"] = per_row[rows].sum() / n_row[rows].sum().clamp(min=1)
    return out
