"""Inference: load what `tools/train_gen.py` exported and chat / generate with it.

`Pipeline.from_pretrained(dir)` reads `dir/config.toml` (the resolved training config; its
`gen` section rebuilds the model), `dir/backbone.json` (the backbone folder it was trained on)
and `dir/generator.safetensors` (the trained weights, EMA when training kept one). A folder that
holds only a backbone (e.g. `runs/mllm_tiny/final`) gives a chat-only pipeline.

Left out here: editing and multi-turn sessions (see the editing issue).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image

from unimodal.backbone import Backbone, Message, check_model_dir
from unimodal.config import from_dict, read_toml
from unimodal.generator import Generator, GenModelConfig
from unimodal.grid import to_pil


class Pipeline:
    """Chat with the backbone and generate images with the trained generator."""

    def __init__(self, backbone: Backbone, generator: Generator | None = None):
        self.backbone = backbone
        self.generator = generator

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
            gen = Generator(cfg, backbone)
            gen.load_trainable_state_dict(load_file(p / "generator.safetensors"))
            gen.to(device).eval()
            return cls(backbone, gen)
        backbone = Backbone.from_pretrained(p, dtype=dtype).freeze()
        backbone.to(device)
        return cls(backbone)

    def chat(
        self,
        messages: list[Message],
        images: list[Image.Image] | None = None,
        stream: bool = False,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
    ) -> str | Iterator[str]:
        """Answer a conversation; `stream=True` yields text pieces."""
        if stream:
            return self.backbone.chat_stream(messages, images, max_new_tokens, temperature)
        return self.backbone.chat(messages, images, max_new_tokens, temperature)

    def generate(
        self,
        prompt: str | list[str],
        *,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
        num_images: int = 1,
    ) -> list[Image.Image]:
        """Text-to-image at the model's trained resolution; returns PIL images."""
        if self.generator is None:
            raise ValueError("this pipeline has no generator (the folder holds only a backbone)")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        prompts = [p for p in prompts for _ in range(num_images)]
        return to_pil(self.generator.generate(prompts, steps=steps, guidance=guidance, seed=seed))
