"""The shared backbone: one thin class over a Hugging Face (vision-)language model.

Loads Qwen2-VL / Qwen2.5-VL (and plain causal LMs such as Qwen2.5-Coder) from a local folder
with the Auto classes, and gives the three uses what they need:

- understanding: `chat` / `chat_stream` (see `unimodal.sampling`);
- generation: `run` / `position_ids`, on which `unimodal.queries` builds the query pass
  (prompt + learnable queries through the frozen weights);
- reasoning: named LoRA heads (`unimodal.lora_heads`), `token_logprobs` for policy gradients.

Left out on purpose: video inputs, and any training logic (that lives in `tools/`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from unimodal.fsdp import block_names
from unimodal.lora_heads import LoraHeads

Message = dict[str, Any]


class BackboneError(ValueError):
    """A local model folder that cannot be used; the message names the path and what is missing."""


def check_model_dir(path: str | Path) -> Path:
    """Fail early with one clear line if `path` is not a loadable Hugging Face model folder."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise BackboneError(
            f"model folder not found: {p} (expected a local Hugging Face folder with config.json, "
            "*.safetensors weights and tokenizer files; nothing is downloaded)"
        )
    missing = []
    if not (p / "config.json").is_file():
        missing.append("config.json")
    if not (list(p.glob("*.safetensors")) or list(p.glob("*.bin"))):
        missing.append("model weights (*.safetensors)")
    if not any(
        (p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")
    ):
        missing.append("tokenizer (tokenizer.json or tokenizer_config.json)")
    index = p / "model.safetensors.index.json"
    if index.is_file():
        import json

        shards = set(json.loads(index.read_text())["weight_map"].values())
        missing += [s for s in sorted(shards) if not (p / s).is_file()]
    if missing:
        raise BackboneError(f"incomplete model folder {p}: missing {', '.join(missing)}")
    return p


def text_message(message: Message, path: str | None = None) -> Message:
    """`message` with list content (OpenAI-style parts) joined into one string, for text-only
    templates; image parts are refused with a ValueError naming the model folder."""
    content = message["content"]
    if not isinstance(content, list):
        return message
    other = sorted({p.get("type", "text") for p in content} - {"text"})
    if other:
        raise ValueError(f"{path}: this backbone is text-only; it cannot take {other} parts")
    return {**message, "content": "\n".join(p.get("text") or "" for p in content)}


@dataclass
class Prompt:
    """A tokenised, left-padded batch of prompts (and their images) ready for the model."""

    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    extra: dict[str, torch.Tensor]  # pixel_values, image_grid_thw, mm_token_type_ids if any

    def to(self, device: torch.device | str) -> Prompt:
        extra = {k: v.to(device) for k, v in self.extra.items()}
        return Prompt(self.input_ids.to(device), self.attention_mask.to(device), extra)


class Backbone(LoraHeads, nn.Module):
    """A Hugging Face VLM (or causal LM) plus its processor, with the faces the three uses need."""

    def __init__(self, model: nn.Module, processor: Any, path: str | None = None):
        super().__init__()
        self.model = model
        self.processor = processor
        self.path = path
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.is_vlm = hasattr(processor, "image_processor")
        self.lora_names: list[str] = []

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls, path: str | Path, dtype: torch.dtype | None = None, attn_implementation: str = "sdpa"
    ) -> Backbone:
        """Load model and processor from a local folder; nothing is downloaded."""
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForImageTextToText,
            AutoProcessor,
            AutoTokenizer,
        )

        p = check_model_dir(path)
        config = AutoConfig.from_pretrained(p, local_files_only=True)
        kwargs = dict(local_files_only=True, attn_implementation=attn_implementation)
        if dtype is not None:
            kwargs["dtype"] = dtype
        if hasattr(config, "vision_config"):
            model = AutoModelForImageTextToText.from_pretrained(p, **kwargs)
            processor = AutoProcessor.from_pretrained(p, local_files_only=True)
        else:
            model = AutoModelForCausalLM.from_pretrained(p, **kwargs)
            processor = AutoTokenizer.from_pretrained(p, local_files_only=True)
        return cls(model, processor, str(p))

    # ------------------------------------------------------------------ properties
    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @property
    def _no_split_modules(self) -> list[str]:
        """The blocks FSDP wraps (accelerate reads this when its config names no classes)."""
        return block_names(self.model)

    @property
    def eos_token_ids(self) -> list[int]:
        """Ids that end an answer: the tokenizer's eos, `<|im_end|>` and the `eos_token_id` (an
        int or a list) of the model's generation_config.json."""
        ids = {self.tokenizer.eos_token_id}
        im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(im_end, int) and im_end != self.tokenizer.unk_token_id:
            ids.add(im_end)
        listed = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(listed if isinstance(listed, (list, tuple)) else [listed])
        return sorted(i for i in ids if i is not None)

    def freeze(self) -> Backbone:
        """Frozen mode: no gradients into the weights, eval mode (no dropout)."""
        self.model.requires_grad_(False)
        self.model.eval()
        return self

    # ------------------------------------------------------------------ prompts
    @property
    def reserved_tokens(self) -> list[str]:
        """Control tokens (chat markers, image pads) that user text must not contain."""
        added = list(self.tokenizer.get_added_vocab()) + list(self.tokenizer.all_special_tokens)
        return sorted({t for t in added if t.startswith("<|")})

    def check_text(self, text: str) -> None:
        """Reject text that smuggles control tokens (they would corrupt the prompt's layout)."""
        for t in self.reserved_tokens:
            if t in text:
                raise ValueError(f"text contains the reserved control token {t}")

    def render(self, messages: list[Message], add_generation_prompt: bool = True) -> str:
        """Render a conversation with the model's chat template (control tokens in text refused).
        A text-only model's template takes strings: list content is joined to its text there."""
        for m in messages:
            parts = m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}]
            for part in parts:
                self.check_text(part.get("text") or "")
        if not self.is_vlm:
            messages = [text_message(m, self.path) for m in messages]
        render = getattr(self.processor, "apply_chat_template", None)
        return render(messages, add_generation_prompt=add_generation_prompt, tokenize=False)

    def encode(
        self, texts: Sequence[str], images: Sequence[Sequence[Image.Image]] | None = None
    ) -> Prompt:
        """Tokenise rendered prompts (left-padded) with their images (one list per prompt)."""
        flat = [im.convert("RGB") for ims in (images or []) for im in ims]
        if flat and not self.is_vlm:
            raise ValueError(f"{self.path}: this backbone is text-only; images cannot be passed")
        if self.is_vlm:
            kw = {"images": flat} if flat else {}
            batch = self.processor(text=list(texts), padding=True, return_tensors="pt", **kw)
        else:
            batch = self.tokenizer(list(texts), padding=True, return_tensors="pt")
        extra = {
            k: batch[k]
            for k in ("pixel_values", "image_grid_thw", "mm_token_type_ids")
            if k in batch and (k != "mm_token_type_ids" or flat)
        }
        return Prompt(batch["input_ids"], batch["attention_mask"], extra)

    def encode_chat(
        self, conversations: Sequence[list[Message]], images: Sequence[Sequence[Image.Image]] | None
    ) -> Prompt:
        return self.encode([self.render(c) for c in conversations], images)

    # ------------------------------------------------------------------ forward passes
    def position_ids(self, prompt: Prompt) -> torch.Tensor:
        """RoPE positions: 3-D M-RoPE when images are present, else positions that skip padding."""
        base = self.model.model
        if "image_grid_thw" in prompt.extra and hasattr(base, "get_rope_index"):
            pos, _ = base.get_rope_index(
                prompt.input_ids,
                mm_token_type_ids=prompt.extra["mm_token_type_ids"],
                image_grid_thw=prompt.extra["image_grid_thw"],
                attention_mask=prompt.attention_mask,
            )
            return pos  # (3, B, L)
        return (prompt.attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, L)

    def run(
        self,
        prompt: Prompt,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Any = None,
        use_cache: bool = False,
    ) -> Any:
        """One pass of the base model (no LM head); returns the HF output (last_hidden_state...)."""
        kwargs = {k: v for k, v in prompt.extra.items() if k != "mm_token_type_ids" or self.is_vlm}
        if position_ids is None:
            position_ids = self.position_ids(prompt)
        return self.model.model(
            input_ids=prompt.input_ids if inputs_embeds is None or self.is_vlm else None,
            inputs_embeds=inputs_embeds,
            attention_mask=prompt.attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            **kwargs,
        )

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor
    ) -> torch.Tensor:
        """Next-token logits (B, L, V), or (N, V) where a bool mask `at` (B, L) in `extra` is
        set; the entry point wrapped by DDP / FSDP in training."""
        at = extra.pop("at", None)
        return self.logits(Prompt(input_ids, attention_mask, extra), at)

    def logits(self, prompt: Prompt, at: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits at every position (B, L, V), or (N, V) where `at` (B, L) is set."""
        hidden = self.run(prompt).last_hidden_state  # (B, L, D)
        return self.model.get_output_embeddings()(hidden if at is None else hidden[at])

    def token_logprobs(
        self, prompt: Prompt, temperature: float = 1.0, with_entropy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probabilities of each token given its prefix (B, L-1), optionally entropies."""
        logits = self.logits(prompt)[:, :-1].float() / temperature  # (B, L-1, V)
        logp = torch.log_softmax(logits, -1)
        target = prompt.input_ids[:, 1:].unsqueeze(-1)  # (B, L-1, 1)
        token_lp = logp.gather(-1, target).squeeze(-1)  # (B, L-1)
        entropy = -(logp.exp() * logp).sum(-1) if with_entropy else None
        return token_lp, entropy

    # ------------------------------------------------------------------ chat
    def chat(
        self,
        messages: list[Message],
        images: Sequence[Image.Image] | None = None,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
    ) -> str:
        """Answer a conversation (images referenced by `{"type": "image"}` parts, in order)."""
        return "".join(self.chat_stream(messages, images, max_new_tokens, temperature, top_p))

    def chat_stream(
        self,
        messages: list[Message],
        images: Sequence[Image.Image] | None = None,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
    ) -> Iterator[str]:
        """Stream the answer as text pieces as they are decoded."""
        from unimodal.sampling import stream_text

        prompt = self.encode_chat([messages], [list(images or [])]).to(self.device)
        yield from stream_text(self, prompt, max_new_tokens, temperature, top_p)
