"""One stage-0 micro-batch through the model: length buckets and logits at target positions.

Two levers that change the cost of a step, not what it trains on:

- `buckets`: code chunks (~100 tokens) and image chats (~40) are tokenised as separate
  sub-batches, so a single code chunk no longer pads every VQA row to its length. The loss is
  still the mean over all the micro-batch's examples of each example's per-token mean.
- `targets_only`: the LM head runs only at the positions that predict a target token (for a
  VQA row 2-4 of ~40), instead of producing (B, L, V) logits everywhere.

Left out on purpose: packing several examples into one row.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from unimodal.backbone import Backbone, Prompt
from unimodal.stage0 import Example, collate, kind_losses
from unimodal.vision_probe import Capture, TokenProbe, probe_loss

Forward = Callable[[Prompt], torch.Tensor]


def buckets(examples: list[Example], by_kind: bool) -> list[list[Example]]:
    """The micro-batch as one bucket, or (`by_kind`) text-only rows and image rows apart."""
    if not by_kind:
        return [examples]
    text = [e for e in examples if e.kind == "code"]
    chat = [e for e in examples if e.kind != "code"]
    return [b for b in (chat, text) if b]


def target_losses(
    logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor, kinds: list[str]
) -> dict[str, torch.Tensor]:
    """`kind_losses` from logits (N, V) at the positions `at_targets(mask)` only: the same
    values without the (B, L, V) logits."""
    m = mask[:, 1:].bool()  # (B, L-1): position t predicts token t + 1
    rows = m.nonzero()[:, 0]  # (N,)
    ce = torch.nn.functional.cross_entropy(logits.float(), input_ids[:, 1:][m], reduction="none")
    per_row = torch.zeros(len(kinds), device=ce.device).index_add(0, rows, ce)  # (B,)
    n_row = m.sum(1).float()
    out = {"loss": (per_row / n_row.clamp(min=1)).mean()}
    per_row = per_row.detach()
    for kind in sorted(set(kinds)):
        sel = torch.tensor([k == kind for k in kinds], device=ce.device)
        out[f"loss_{kind}"] = per_row[sel].sum() / n_row[sel].sum().clamp(min=1)
    return out


def at_targets(mask: torch.Tensor) -> torch.Tensor:
    """The positions (B, L) whose next token is a target of the loss mask (B, L)."""
    at = torch.zeros_like(mask, dtype=torch.bool)
    at[:, :-1] = mask[:, 1:].bool()
    return at


def merge(parts: list[tuple[dict[str, torch.Tensor], int]]) -> dict[str, torch.Tensor]:
    """Bucket losses joined: `loss` weighted by each bucket's rows (the mean over examples);
    the per-kind entries never overlap (a kind lives in one bucket)."""
    total = sum(n for _, n in parts)
    out = {k: v for d, _ in parts for k, v in d.items() if k != "loss"}
    out["loss"] = sum(d["loss"] * (n / total) for d, n in parts)
    return out


def bucket_losses(
    model: torch.nn.Module,
    backbone: Backbone,
    group: list[Example],
    device: torch.device | str,
    targets_only: bool = False,
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """`kind_losses` of one bucket of examples (tokenised together) and its image patch grids
    (n, 3), or None for a text-only bucket."""
    prompt, mask = collate(backbone, group)
    prompt, mask = prompt.to(device), mask.to(device)
    kinds, ids = [e.kind for e in group], prompt.input_ids
    grid = prompt.extra.get("image_grid_thw")
    if targets_only:
        logits = model(ids, prompt.attention_mask, at=at_targets(mask), **prompt.extra)
        return target_losses(logits, ids, mask, kinds), grid
    logits = model(ids, prompt.attention_mask, **prompt.extra)
    return kind_losses(logits, ids, mask, kinds), grid


def step_losses(
    model: torch.nn.Module,
    backbone: Backbone,
    examples: list[Example],
    device: torch.device | str,
    by_kind: bool = False,
    targets_only: bool = False,
    probe: TokenProbe | None = None,
    probe_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """The stage-0 losses of one micro-batch (`kind_losses` keys), bucket by bucket. `model` is
    the prepared (possibly wrapped) backbone; with `targets_only` its `forward` gets `at`, so
    the LM head runs at the target positions only. With a `probe`, `loss_probe` (the vision
    warm-up of vision_probe.py on the image rows' merged tokens) joins `loss` x `probe_weight`."""
    parts, probes = [], []
    for group in buckets(examples, by_kind):
        images = [e for e in group if e.images]
        capture = Capture(backbone.model.model.visual) if probe is not None and images else None
        try:
            losses, grid = bucket_losses(model, backbone, group, device, targets_only)
        finally:
            if capture is not None:
                capture.close()
        parts.append((losses, len(group)))
        if capture is not None:
            scenes = [e.scene for e in images]
            probes.append(probe_loss(probe, capture.value, scenes, grid))
    out = merge(parts)
    if probes:
        out["loss_probe"] = sum(probes) / len(probes)
        out["loss"] = out["loss"] + probe_weight * out["loss_probe"]
    return out
