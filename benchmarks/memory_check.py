"""`bench.py memory --check`: the meta-device estimate of `benchmarks.memory` against a real CPU
step of 2-layer fixtures of the same families (real widths, fp32, a 16,384-row vocabulary).

Measured with the profiler's allocation events: the bytes the forward leaves alive for the
backward (what the estimate counts) and the step's peak (forward + backward, gradients incl.).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.memory import GIB, activation_bytes, meta_generator


def measured_step_bytes(gen: Any, batch: int, prompt_tokens: int) -> tuple[int, int]:
    """One real CPU forward + backward under the profiler: the newly allocated bytes still
    alive when the forward ends (what it keeps for the backward), and the step's peak."""
    from unimodal.backbone import Prompt

    ids = torch.full((batch, prompt_tokens), 100, dtype=torch.long)
    prompt = Prompt(ids, torch.ones_like(ids), {})
    f, c = gen.vae.downsample, gen.decoder.in_channels
    lat = [torch.randn(batch, c, r // f, r // f) for r in gen.cfg.resolutions]
    gen.zero_grad(set_to_none=True)
    with _allocations() as fwd:
        loss = gen(prompt, None, latents=lat)["loss"]
    with _allocations() as bwd:
        loss.backward()
    kept = fwd["live"]
    return kept, max(fwd["peak"], kept + bwd["peak"])


@contextmanager
def _allocations() -> Iterator[dict[str, int]]:
    """Live bytes at the end and their peak, from the profiler's alloc / free events."""
    from torch.profiler import ProfilerActivity, profile

    out = {"live": 0, "peak": 0}
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        yield out
    raw = prof.profiler.kineto_results.events()  # one "[memory]" event per alloc / free
    for e in sorted((e for e in raw if e.name() == "[memory]"), key=lambda e: e.start_ns()):
        out["live"] += e.nbytes()
        out["peak"] = max(out["peak"], out["live"])


def check(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Estimate vs measurement on 2-layer fp32 fixtures of the config's families."""
    from unimodal.backbone import Backbone
    from unimodal.checkpointing import checkpoint_layers
    from unimodal.fixtures import build_fixture
    from unimodal.generator import Generator

    res = tuple(int(r) for r in args.check_resolutions.split(","))
    root = Path(tempfile.mkdtemp(prefix="memcheck-"))
    bb = build_fixture(
        args.backbone_like or "qwen2.5-vl-3b", root / "bb", 2, 16384, dtype="float32"
    )
    dec = build_fixture(args.decoder_like or "sana-600m", root / "dec", 2, dtype="float32")
    gcfg = replace(cfg.gen, resolutions=res, backbone_checkpointing=False)
    gcfg.decoder = replace(gcfg.decoder, pretrained=str(dec), align_block=1)  # of 2
    gcfg.vae = replace(gcfg.vae, path=str(dec))
    small = replace(cfg, gen=gcfg)
    small.model = replace(cfg.model, path=str(bb), dtype="float32")
    rows = {}
    meta = meta_generator(small).train()
    torch.manual_seed(0)
    real = Generator(gcfg, Backbone.from_pretrained(bb, dtype=torch.float32)).train()
    grads = 4 * sum(p.numel() for p in real.parameters() if p.requires_grad)
    for name in ("without", "with"):
        if name == "with":
            checkpoint_layers(meta.backbone.model)
            checkpoint_layers(real.backbone.model)
        act = activation_bytes(meta, args.check_batch, args.prompt_tokens, "meta")
        kept, peak = measured_step_bytes(real, args.check_batch, args.prompt_tokens)
        rows[f"{name} backbone checkpointing"] = {
            "activations_estimated_gib": act / GIB, "activations_measured_gib": kept / GIB,
            "ratio": act / kept, "gradients_gib": grads / GIB,
            "step_peak_measured_gib": peak / GIB}  # fmt: skip
    return {"fixtures": [str(bb), str(dec)], "batch": args.check_batch, "resolutions": res,
            "rows": rows, "within_20_percent": all(abs(r["ratio"] - 1) <= 0.2 for r in rows.values())}  # fmt: skip
