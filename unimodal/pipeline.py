"""Inference: load what `tools/train_gen.py` exported and chat / generate with it.

`Pipeline.from_pretrained(dir)` reads `dir/config.toml` (the resolved training config; its
`gen` section rebuilds the model), `dir/backbone.json` (the backbone folder it was trained on)
and `dir/generator.safetensors` (the trained weights, EMA when training kept one). A folder that
holds only a backbone (e.g. `runs/mllm_tiny/final`) gives a chat-only pipeline.

Seeds: image j of one `generate` / `edit` call (prompt-major, `num_images` per prompt) starts
from noise drawn with seed `seed + j` alone, so it is the image that a call for that image
alone with seed `seed + j` gives, whatever else is in the batch (up to float rounding of
batched matrix products; pixel-equal on the CPU).

`pipe.session()` keeps a multi-turn conversation with its images: "now make the circle blue"
after "draw a red circle" edits the last image, and chat questions see every earlier image.

Heads: `dir/heads/<name>/` folders (PEFT adapters, `unimodal.adapters`; `tools/add_heads.py`
writes them, e.g. `azr` and `judge`) are LoRA heads on the one backbone. `chat(..., head="azr")`
answers with one on; `generate` / `edit` always run with every head off, so heads never change
the images. `judge(prompt, a, b)` renders and parses with an injected `JudgeFormat` (RM-R1's
lives in `reasoning.rm_r1.judge`, which `unimodal` does not import: `with_judge(pipe)` there).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image

from unimodal.adapters import is_adapter, load_adapter
from unimodal.backbone import Backbone, Message, check_model_dir
from unimodal.config import from_dict, read_toml
from unimodal.data import to_pixels
from unimodal.generator import Generator, GenModelConfig
from unimodal.grid import to_pil


class JudgeFormat(Protocol):
    """How a judge head is prompted and its trace read (e.g. RM-R1's chain of rubrics)."""

    def messages(self, prompt: Any, answer_a: str, answer_b: str) -> list[Message]: ...

    def parse(self, trace: str) -> Any: ...


class Pipeline:
    """Chat with the backbone (or one of its heads) and generate images with the generator."""

    def __init__(
        self,
        backbone: Backbone,
        generator: Generator | None = None,
        heads: dict[str, dict] | None = None,
        judge_format: JudgeFormat | None = None,
    ):
        self.backbone = backbone
        self.generator = generator
        self.heads = dict(heads or {})  # head name -> its metadata (head.json)
        self.judge_format = judge_format

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | None = None, dtype: torch.dtype | None = None
    ) -> Pipeline:
        p = Path(path)
        if not p.is_dir():
            raise FileNotFoundError(f"model folder not found: {p}")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if (p / "generator.safetensors").is_file():
            from safetensors.torch import load_file

            for need in ("config.toml", "backbone.json"):
                if not (p / need).is_file():
                    raise FileNotFoundError(f"{p}: missing {need} (written by tools/train_gen.py)")
            table = read_toml(p / "config.toml")
            cfg = from_dict(GenModelConfig, table.get("gen", {}))
            backbone_dir = json.loads((p / "backbone.json").read_text())["path"]
            backbone = Backbone.from_pretrained(check_model_dir(backbone_dir), dtype=dtype)
            gen = Generator(cfg, backbone, pretrained_weights=False)  # weights: just below
            gen.load_trainable_state_dict(load_file(p / "generator.safetensors"))
            heads = load_heads(backbone, p)
            gen.to(device).eval()
            return cls(backbone, gen, heads)
        backbone = Backbone.from_pretrained(p, dtype=dtype).freeze()
        heads = load_heads(backbone, p)
        backbone.to(device)
        return cls(backbone, heads=heads)

    def chat(
        self,
        messages: list[Message],
        images: list[Image.Image] | None = None,
        stream: bool = False,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        head: str | None = None,
    ) -> str | Iterator[str]:
        """Answer a conversation, with LoRA head `head` on (None: the base model);
        `stream=True` yields text pieces (the head stays on until the stream ends)."""
        if stream:
            return self._stream(messages, images, max_new_tokens, temperature, head)
        with self.backbone.lora(head):
            return self.backbone.chat(messages, images, max_new_tokens, temperature)

    def _stream(self, messages, images, max_new_tokens, temperature, head) -> Iterator[str]:
        with self.backbone.lora(head):
            yield from self.backbone.chat_stream(messages, images, max_new_tokens, temperature)

    def judge(
        self,
        prompt: str | list[Message],
        answer_a: str,
        answer_b: str,
        head: str = "judge",
        max_new_tokens: int = 1024,
    ) -> Any:
        """Which answer to `prompt` is better, judged greedily by head `head`: what the
        `judge_format` parses from the trace (RM-R1: a `Judgement` with verdict and rubric)."""
        if self.judge_format is None:
            raise ValueError(
                "no judge format: use reasoning.rm_r1.judge.with_judge(pipe) (or set "
                "pipe.judge_format); unimodal does not import reasoning"
            )
        if head not in self.backbone.lora_names:
            raise ValueError(f"no head '{head}' in this model (heads: {sorted(self.heads)})")
        messages = self.judge_format.messages(prompt, answer_a, answer_b)
        trace = self.chat(messages, max_new_tokens=max_new_tokens, head=head)
        return self.judge_format.parse(trace)

    def generate(
        self,
        prompt: str | list[str],
        *,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
        num_images: int = 1,
        seeds: list[int] | None = None,
    ) -> list[Image.Image]:
        """Text-to-image at the model's trained resolution; returns PIL images.

        Image j is drawn from seed `seed + j`, or from `seeds[j]` when `seeds` is given.
        """
        if self.generator is None:
            raise ValueError("this pipeline has no generator (the folder holds only a backbone)")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        prompts = [p for p in prompts for _ in range(num_images)]
        seeds = list(range(seed, seed + len(prompts))) if seeds is None else list(seeds)
        with self.backbone.lora(None):  # the generator reads the frozen base, never a head
            out = self.generator.generate(prompts, steps=steps, guidance=guidance, seeds=seeds)
        return to_pil(out)

    def edit(
        self,
        image: Image.Image,
        instruction: str,
        *,
        text_guidance: float | None = None,
        image_guidance: float | None = None,
        steps: int | None = None,
        seed: int = 0,
        num_images: int = 1,
    ) -> list[Image.Image]:
        """Edit `image` by `instruction` at the model's trained resolution; image j is drawn
        from seed `seed + j`."""
        gen = self.generator
        if gen is None or not gen.cfg.edit:
            raise ValueError("this model cannot edit (train it with gen.edit = true)")
        if not instruction.strip():
            raise ValueError("edit instruction is empty")
        size = gen.cfg.resolutions[-1]
        src = image.convert("RGB").resize((size, size), Image.BICUBIC)
        ref = to_pixels(src)[None].repeat(num_images, 1, 1, 1)
        with self.backbone.lora(None):  # the generator reads the frozen base, never a head
            out = gen.generate(
                [instruction] * num_images,
                images=[[src]] * num_images,
                ref=ref,
                steps=steps,
                guidance=text_guidance,
                image_guidance=image_guidance,
                seeds=list(range(seed, seed + num_images)),
            )
        return to_pil(out)

    def session(self) -> Session:
        """A multi-turn session that remembers the conversation and its images."""
        return Session(self)


def load_heads(backbone: Backbone, folder: Path) -> dict[str, dict]:
    """Attach every `folder/heads/<name>/` adapter to `backbone` (all off); their metadata."""
    heads = {}
    for sub in sorted((folder / "heads").glob("*")) if (folder / "heads").is_dir() else []:
        if is_adapter(sub):
            heads[sub.name] = load_adapter(backbone, sub, sub.name)
    return heads


@dataclass
class Turn:
    role: str  # user | assistant
    text: str
    images: list[Image.Image] = field(default_factory=list)


class Session:
    """Conversation + image history on top of a Pipeline (chat, generate, edit)."""

    def __init__(self, pipe: Pipeline):
        self.pipe = pipe
        self.history: list[Turn] = []

    @property
    def images(self) -> list[Image.Image]:
        return [im for t in self.history for im in t.images]

    def _messages(self) -> list[Message]:
        msgs = []
        for t in self.history:
            content = [{"type": "image"} for _ in t.images] + [{"type": "text", "text": t.text}]
            msgs.append({"role": t.role, "content": content})
        return msgs

    def chat(self, text: str, images: list[Image.Image] | None = None, **kw) -> str:
        """Ask about anything in the conversation so far, earlier images included."""
        self.history.append(Turn("user", text, list(images or [])))
        answer = self.pipe.chat(self._messages(), self.images, **kw)
        self.history.append(Turn("assistant", answer))
        return answer

    def generate(self, prompt: str, **kw) -> Image.Image:
        image = self.pipe.generate(prompt, **kw)[0]
        self.history += [Turn("user", prompt), Turn("assistant", "", [image])]
        return image

    def edit(self, instruction: str, image: Image.Image | None = None, **kw) -> Image.Image:
        """Edit `image`, or the last image of the conversation when none is given."""
        source = image or (self.images[-1] if self.images else None)
        if source is None:
            raise ValueError("nothing to edit: no image in this session yet")
        out = self.pipe.edit(source, instruction, **kw)[0]
        self.history += [
            Turn("user", instruction, [image] if image else []),
            Turn("assistant", "", [out]),
        ]
        return out
