"""Build a small Qwen2-VL backbone offline and save it like a real checkpoint.

The model, tokenizer and processor are the very Hugging Face classes that load Qwen2-VL
checkpoints, so everything afterwards goes through the same `from_pretrained` path. The
tokenizer is a byte-level BPE trained with `tokenizers` on text the package can produce without
network: shapes-world captions and questions plus Python standard-library source code.

Presets: `tiny` (well under a million parameters, for tests), `tiny_gen` (the same with a
near-linear init, the generation default's backbone) and `small` (tens of millions, for GPU
runs). Left out on purpose: any pretrained weights (the model starts random).
"""

from __future__ import annotations

import argparse
import inspect
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Standard-library modules whose source teaches the tokenizer (and stage 0) Python.
CODE_MODULES = (
    "json",
    "collections",
    "random",
    "functools",
    "string",
    "heapq",
    "bisect",
    "fractions",
    "statistics",
    "difflib",
    "calendar",
    "shlex",
    "csv",
    "copy",
    "enum",
    "dataclasses",
    "pprint",
    "operator",
    "glob",
    "fnmatch",
)
# Held out of the tokenizer and of stage-0 LM: the held-out code loss is measured on them.
HELDOUT_CODE_MODULES = ("textwrap", "colorsys")


@dataclass(frozen=True)
class Preset:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    layers: int
    heads: int
    kv_heads: int
    vision_depth: int
    vision_dim: int
    vision_heads: int
    image_pixels: int  # images are resized to about this many pixels (area)
    init_std: float  # weight init; the tiny presets are used untrained, as random-feature
    # backbones: a large scale (tiny) mixes prompt tokens into the query positions strongly
    # but nonlinearly; a small one (tiny_gen) keeps the layers near-linear, so the query states
    # relative to the empty prompt are close to a bag of the prompt's token embeddings
    patch_size: int = 14  # the vision tower's patch side in pixels (Qwen2-VL: 14)
    max_pixels: int = 0  # resize ceiling (area); 0: 4 x image_pixels
    rope_theta: float = 1e4  # the LM's RoPE base
    mrope: tuple[int, int, int] | None = None  # frequency pairs for (time, height, width);
    # None: Qwen2-VL's split (half the pairs to time). Time takes the fastest frequencies, so
    # on a small image grid with a large base the height / width pairs barely rotate
    answer_words: bool = False  # the tokenizer corpus also holds each VQA answer alone, as the
    # chat puts it (after "assistant\n", no space), so answers are single tokens: `circle` is
    # otherwise `c`,`irc`,`le` (its first token shared with `cyan`)
    qwen2_split: bool = False  # Qwen2's pre-tokenizer: digits one token each, as in real Qwen2


PRESETS = {
    "tiny": Preset(2048, 64, 128, 2, 4, 2, 1, 32, 2, 56 * 56, 0.3),
    "tiny_gen": Preset(2048, 64, 128, 2, 4, 2, 1, 32, 2, 56 * 56, 0.02),
    "small": Preset(
        8192, 384, 1024, 8, 6, 2, 4, 192, 4, 112 * 112, 0.02, 14, 0, 10.0, (8, 12, 12), False, True
    ),
    "cpu": Preset(
        2048, 128, 384, 4, 4, 2, 2, 64, 4, 64 * 64, 0.1, 8, 64 * 64, 10.0, (4, 6, 6), True, True
    ),
    "cpu_copy": Preset(
        2048, 128, 384, 2, 4, 2, 2, 64, 4, 64 * 64, 0.02, 8, 64 * 64, 1e3, (2, 2, 12), True, True
    ),
}
# `small` and `cpu` see a 4 x 4 grid of image tokens. With Qwen2-VL's split and base 1e4 the
# width pairs turn by under 0.004 rad across it, so the LM cannot tell image columns apart;
# base 10 with a quarter of the pairs to time turns them by 0.35-0.7 rad (issue 15 note).
# `cpu` has single-token answers (`answer_words`): with the vision probe of stage 0 they took
# shape from chance to 0.50 at 600 steps (README, stage 0). Its init std 0.1 is about
# 1 / sqrt(width): from 0.02 attention starts near uniform and the LM learned late, or never,
# to bind a question's words to image tokens (README, stage 0).
# `cpu_copy` can form a copy (induction) circuit, which `cpu` cannot: content matching across
# tokens needs slow RoPE pairs (base 10 has none: every pair turns >= 0.11 rad per token), a
# small init (0.1 never formed one) and few layers (4 formed it later than 2). Base 1e3 with
# 12 pairs to width still turns the 4 image columns by up to 0.5 rad (README, stage 0).


def stdlib_code(modules: tuple[str, ...] = CODE_MODULES) -> list[str]:
    """Source code of some pure-Python standard-library modules (found offline)."""
    out = []
    for name in modules:
        try:
            out.append(inspect.getsource(__import__(name)))
        except (OSError, TypeError, ImportError):
            continue
    return out


def shapes_text(n: int = 3000, seed: int = 0, answers_alone: bool = False) -> Iterator[str]:
    """Captions, questions and answers from the shapes world (for the tokenizer corpus); with
    `answers_alone` each answer also as a text of its own (how a chat answer starts)."""
    import numpy as np

    from unimodal.data import QTYPES, questions, sample_scene, train_caption

    rng = np.random.default_rng(seed)
    for _ in range(n):
        scene = sample_scene(rng)
        try:
            yield train_caption(scene, rng)[0]
        except ValueError:  # a scene no training caption describes
            pass
        for qtype in QTYPES:
            for qa in questions(scene, qtype)[:2]:
                yield f"{qa.question} {qa.answer}"
                if answers_alone:
                    yield qa.answer


def train_tokenizer(vocab_size: int, corpus: list[str], qwen2_split: bool = False):
    """Byte-level BPE with the Qwen2-VL special tokens (Qwen2's pre-tokenizer if `qwen2_split`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Tokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = (
        Qwen2Tokenizer()._tokenizer.pre_tokenizer
        if qwen2_split
        else pre_tokenizers.ByteLevel(add_prefix_space=False)
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )


def build_processor(p: Preset, tokenizer):
    """The Qwen2-VL processor (image processor + tokenizer + chat template) of a preset."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(
        min_pixels=p.image_pixels,
        max_pixels=p.max_pixels or p.image_pixels * 4,
        patch_size=p.patch_size,
        merge_size=2,
        temporal_patch_size=2,
    )
    return Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def qwen2vl_config(p: Preset, tokenizer):
    """The `Qwen2VLConfig` of a preset, with the tokenizer's special-token ids."""
    from transformers import Qwen2VLConfig

    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in SPECIAL_TOKENS}
    head_dim = p.hidden_size // p.heads
    half = head_dim // 2
    mrope = list(p.mrope or (half - 2 * (half // 4), half // 4, half // 4))  # t, h, w
    if sum(mrope) != half:
        raise ValueError(f"preset mrope {mrope} must sum to head_dim / 2 = {half}")
    return Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=p.hidden_size,
            intermediate_size=p.intermediate_size,
            num_hidden_layers=p.layers,
            num_attention_heads=p.heads,
            num_key_value_heads=p.kv_heads,
            max_position_embeddings=4096,
            rope_parameters={
                "rope_type": "default",
                "mrope_section": mrope,
                "rope_theta": p.rope_theta,
            },
            bos_token_id=None,
            initializer_range=p.init_std,
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=p.vision_depth,
            embed_dim=p.vision_dim,
            hidden_size=p.hidden_size,
            num_heads=p.vision_heads,
            patch_size=p.patch_size,
            spatial_merge_size=2,
            temporal_patch_size=2,
            initializer_range=p.init_std,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def build_backbone(out_dir: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    """Build, initialise and `save_pretrained` a Qwen2-VL of the given preset into `out_dir`."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    if preset not in PRESETS:
        raise ValueError(f"unknown backbone preset '{preset}'; choose one of {sorted(PRESETS)}")
    p = PRESETS[preset]
    tokenizer = train_tokenizer(
        p.vocab_size,
        stdlib_code() + list(shapes_text(answers_alone=p.answer_words)),
        p.qwen2_split,
    )
    processor = build_processor(p, tokenizer)
    config = qwen2vl_config(p, tokenizer)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def ensure_backbone(path: str, preset: str, cache_root: str | Path = "runs/backbones") -> Path:
    """`path` when given; otherwise the `preset` backbone, built once under `cache_root` (and
    again when the preset's fields changed since: `preset.json` in the folder records them)."""
    if path:
        return Path(path)
    out = Path(cache_root) / preset
    stamp = out / "preset.json"
    want = json.dumps(asdict(PRESETS[preset]), sort_keys=True) if preset in PRESETS else ""
    if not (out / "config.json").is_file() or not stamp.is_file() or stamp.read_text() != want:
        print(f"building the offline '{preset}' backbone in {out}", flush=True)
        build_backbone(out, preset)
        stamp.write_text(want)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Build a small offline Qwen2-VL backbone folder.")
    ap.add_argument("out_dir")
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    print(build_backbone(a.out_dir, a.preset, a.seed))


if __name__ == "__main__":
    main()
