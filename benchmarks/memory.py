"""`bench.py memory`: per-GPU memory of a `tools/train_gen.py` config, estimated on the meta
device (nothing is allocated, no weight is read), and checked against a measured CPU step.

    python tools/bench.py memory --config gen_sana_qwen25vl --backbone-like qwen2.5-vl-3b \
        --decoder-like sana-600m            # published configs stand in for missing folders
    python tools/bench.py memory --config gen_sana_qwen25vl --check   # + the fixture check

The model is built from its folders' configs on the meta device (`--*-like` writes config-only
folders of the published configs in `unimodal.fixtures` instead). Static memory: every
parameter in its dtype (the frozen backbone in `model.dtype`, the rest as built: fp32), and for
what trains fp32 gradients, AdamW's two fp32 moments and, with `train.ema_decay > 0`, an fp32
EMA copy; under bf16 mixed precision autocast's bf16 copies of the trainable weights. Per
sample: the bytes autograd keeps for one training forward (query pass, connector, decoder and
alignment at every trained scale, the prompt as `--prompt-tokens` tokens, latents given as with
`data.cache`), counted with saved-tensor hooks (each storage once, weights excluded), in bf16
under bf16 mixed precision; with and without `gen.backbone_checkpointing`. Not counted: the VAE
encode of a step without a cache, CUDA context and allocator fragmentation (`--reserve-gib`).

`--check` (`benchmarks.memory_check`) builds 2-layer fixtures of the same families (real
widths; fp32), estimates their activations the same way and measures them in a real CPU step.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from benchmarks.gen_train import load_cfg
from benchmarks.report import format_table

GIB = 2**30


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="gen_sana_qwen25vl", help="a train_gen TOML")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--batch", type=int, default=0, help="train.batch_size override")
    p.add_argument("--backbone-like", default="", help="published config for model.path")
    p.add_argument("--decoder-like", default="", help="published decoder config (+ its vae)")
    p.add_argument("--prompt-tokens", type=int, default=64, help="prompt length, template incl.")
    p.add_argument("--gpu-gib", type=float, default=80.0, help="memory of one GPU")
    p.add_argument("--reserve-gib", type=float, default=4.0, help="CUDA context, fragmentation")
    p.add_argument("--check", action="store_true", help="also measure a fixture's CPU step")
    p.add_argument("--check-batch", type=int, default=8, help="fixture check batch")
    p.add_argument("--check-resolutions", default="64,128,256", help="fixture check, px")


def config_folder(like: str, root: Path) -> Path:
    """A config-only folder of the published model `like` (full depth, no weights)."""
    from transformers import AutoConfig

    from unimodal.fixtures.build import PIPELINES, reduced_config
    from unimodal.fixtures.real import FAMILIES
    from unimodal.fixtures.tokenizer import qwen2_tokenizer

    if like not in FAMILIES:
        raise ValueError(f"--*-like: unknown '{like}'; one of {', '.join(FAMILIES)}")
    fam, out = FAMILIES[like], root / like
    if fam.kind in ("vl", "text"):
        text = fam.config.get("text_config", fam.config)
        cfg = reduced_config(fam, text["num_hidden_layers"], None)
        if "vision_config" in cfg:
            cfg["vision_config"] = fam.config["vision_config"]  # whole tower, as published
        config = AutoConfig.for_model(**cfg)
        config.dtype = torch.bfloat16  # the published weights' dtype
        config.save_pretrained(out)
        qwen2_tokenizer(bpe_size=512, eos_token=fam.eos_token).save_pretrained(out)
        return out
    if fam.kind not in PIPELINES:
        raise ValueError(f"--decoder-like: '{like}' is not a decoder ({', '.join(PIPELINES)})")
    parts = {"transformer": fam.config, "vae": FAMILIES[PIPELINES[fam.kind][1]].config}
    for sub, conf in parts.items():
        (out / sub).mkdir(parents=True, exist_ok=True)
        (out / sub / "config.json").write_text(json.dumps(conf))
    return out


def meta_generator(cfg: Any) -> Any:
    """The config's Generator on the meta device, from its folders' configs alone."""
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoTokenizer,
    )

    from unimodal.backbone import Backbone
    from unimodal.generator import Generator

    path = Path(cfg.model.path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model.path: no config.json in {path} (or pass --backbone-like NAME)"
        )
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    auto = AutoModelForImageTextToText if hasattr(config, "vision_config") else AutoModelForCausalLM
    own = getattr(config, "dtype", None) or torch.float32  # "auto": the checkpoint's own
    dtype = own if cfg.model.dtype == "auto" else getattr(torch, cfg.model.dtype)
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    with torch.device("meta"):
        model = auto.from_config(config, dtype=dtype, attn_implementation="sdpa")
        return Generator(cfg.gen, Backbone(model, tok, str(path)), config_only=True)


def static_bytes(gen: Any, ema: bool, bf16: bool) -> dict[str, int]:
    """Parameters by part; gradients, AdamW moments and EMA of what trains (all fp32)."""
    parts: dict[str, int] = {}
    for name, p in gen.named_parameters():
        part = "backbone" if name.startswith("backbone.") else name.split(".")[0]
        key = "decoder" if part == "decoder" else "vae" if part == "vae" else part
        key = key if key in ("backbone", "decoder", "vae") else "queries+connector+heads"
        parts[f"params {key}"] = parts.get(f"params {key}", 0) + p.numel() * p.element_size()
    trainable = sum(p.numel() for p in gen.parameters() if p.requires_grad)
    parts["gradients (fp32)"] = 4 * trainable
    parts["AdamW moments (fp32)"] = 8 * trainable
    parts["EMA (fp32)"] = 4 * trainable if ema else 0
    parts["autocast bf16 weight copies"] = 2 * trainable if bf16 else 0
    return parts


def activation_bytes(gen: Any, batch: int, prompt_tokens: int, device: str) -> int:
    """Bytes autograd keeps for one training forward of `batch` samples (weights excluded)."""
    from unimodal.backbone import Prompt

    ids = torch.zeros(batch, prompt_tokens, dtype=torch.long, device=device)
    prompt = Prompt(ids, torch.ones_like(ids), {})
    f, c = gen.vae.downsample, gen.decoder.in_channels
    lat = [torch.randn(batch, c, r // f, r // f, device=device) for r in gen.cfg.resolutions]
    weights = {_storage(p) for p in gen.parameters()} | {_storage(b) for b in gen.buffers()}
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage(t)
        if key not in weights:
            kept[key] = max(kept.get(key, 0), t.untyped_storage().nbytes())
        return t

    def hold_inputs(_module: Any, args: tuple, kwargs: dict) -> None:  # what checkpoint keeps
        for t in [*args, *kwargs.values()]:
            if isinstance(t, torch.Tensor) and torch.is_grad_enabled():
                kept[_storage(t)] = max(kept.get(_storage(t), 0), t.untyped_storage().nbytes())

    hooks = [m.register_forward_pre_hook(hold_inputs, with_kwargs=True) for m in units(gen)]
    # meta tensors have no values: transformers' check "is this mask all ones?" cannot run
    skip = mock.patch("transformers.masking_utils._ignore_causal_mask_sdpa", lambda *a, **k: False)
    fused = mock.patch("torch.nn.functional.scaled_dot_product_attention", _fused_attention)
    try:
        with skip, fused, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            gen(prompt, None, latents=[x.to(gen.decoder.transformer.dtype) for x in lat])
    finally:
        for h in hooks:
            h.remove()
    return sum(kept.values())


class _FusedAttention(torch.autograd.Function):
    """What a fused attention kernel (flash / memory-efficient, on GPU and CPU) keeps for its
    backward: q, k, v, the output, the log-sum-exp and the mask, never the (L, S) weights that
    the meta device's reference path would save. Only ever run forward, on the meta device."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Any) -> Any:
        out = q.new_empty(*q.shape[:-1], v.shape[-1])  # (B, H, L, Dv)
        lse = q.new_empty(q.shape[:-1], dtype=torch.float32)  # (B, H, L)
        ctx.save_for_backward(*(t for t in (q, k, v, out, lse, mask) if t is not None))
        return out


def _fused_attention(q, k, v, attn_mask=None, *args: Any, **kwargs: Any) -> torch.Tensor:
    return _FusedAttention.apply(q, k, v, attn_mask)


def units(gen: Any) -> list[torch.nn.Module]:
    """The checkpointed blocks, whose inputs stay alive for the recomputation."""
    from functools import partial

    from transformers.modeling_layers import GradientCheckpointingLayer

    out = [
        m
        for m in gen.backbone.model.modules()
        if isinstance(m, GradientCheckpointingLayer) and isinstance(m.forward, partial)
    ]
    tr = gen.decoder.transformer
    if getattr(tr, "gradient_checkpointing", False):
        out += [m for m in tr.modules() if type(m).__name__.endswith("TransformerBlock")]
    return out


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


def estimate(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Static breakdown, activations per sample (with / without backbone checkpointing) and
    the largest batch per GPU that fits, for `cfg` on the meta device."""
    precision = cfg.train.mixed_precision
    bf16 = precision in ("bf16", "auto")  # auto is bf16 on a GPU
    gen = meta_generator(replace(cfg, gen=replace(cfg.gen, backbone_checkpointing=False)))
    static = static_bytes(gen, cfg.train.ema_decay > 0, bf16)
    gen.train()
    if bf16:  # autocast keeps activations in bf16 (norms and losses aside)
        gen.to(torch.bfloat16)
    per = {"without backbone checkpointing": activation_bytes(gen, 1, args.prompt_tokens, "meta")}
    from unimodal.checkpointing import checkpoint_layers

    checkpoint_layers(gen.backbone.model)
    per["with backbone checkpointing"] = activation_bytes(gen, 1, args.prompt_tokens, "meta")
    total = sum(static.values())
    room = args.gpu_gib * GIB - args.reserve_gib * GIB - total
    fits = {k: max(0, math.floor(room / v)) for k, v in per.items()}
    return {
        "static_gib": {k: v / GIB for k, v in static.items()},
        "static_total_gib": total / GIB,
        "activations_per_sample_gib": {k: v / GIB for k, v in per.items()},
        "largest_batch_per_gpu": fits,
        "batch_size_per_micro_step": cfg.train.batch_size,
        "gpu_gib": args.gpu_gib,
        "reserve_gib": args.reserve_gib,
        "mixed_precision": "bf16" if bf16 else precision,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_cfg(args)
    root = Path(tempfile.mkdtemp(prefix="memory-"))
    if args.backbone_like:
        cfg.model = replace(cfg.model, path=str(config_folder(args.backbone_like, root)))
    if args.decoder_like:
        folder = str(config_folder(args.decoder_like, root))
        cfg.gen.decoder = replace(cfg.gen.decoder, pretrained=folder)
        cfg.gen.vae = replace(cfg.gen.vae, path=folder)
    report = {"mode": "memory", "config": args.config, "backbone": cfg.model.path,
              "decoder": cfg.gen.decoder.pretrained, "resolutions": list(cfg.gen.resolutions),
              "prompt_tokens": args.prompt_tokens, **estimate(cfg, args)}  # fmt: skip
    if args.check:
        from benchmarks.memory_check import check

        report["check"] = check(cfg, args)
    return report


def table(report: dict[str, Any]) -> str:
    rows = [(k, f"{v:.2f} GiB") for k, v in report["static_gib"].items()]
    rows.append(("static total", f"{report['static_total_gib']:.2f} GiB"))
    for k, v in report["activations_per_sample_gib"].items():
        fit = report["largest_batch_per_gpu"][k]
        rows.append((f"per sample, {k}", f"{v:.3f} GiB -> batch {fit} per {report['gpu_gib']:g} GiB"))  # fmt: skip
    for k, r in report.get("check", {}).get("rows", {}).items():
        rows.append((f"fixture check, {k}",
                     f"activations est {r['activations_estimated_gib']:.3f} / measured "
                     f"{r['activations_measured_gib']:.3f} GiB (x{r['ratio']:.2f}); step peak "
                     f"{r['step_peak_measured_gib']:.3f} <= est + grads "
                     f"{r['activations_estimated_gib'] + r['gradients_gib']:.3f}"))  # fmt: skip
    return format_table(["memory", "value"], rows)
