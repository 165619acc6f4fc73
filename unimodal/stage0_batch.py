"""One stage-0 micro-batch through the model, with two levers over `kind_losses`:

- `targets_only`: the LM head runs only at the positions that predict a target token (for a
  VQA row 2 of ~40) instead of producing (B, L, V) logits everywhere: the same losses, and a
  step 1.8x faster on the CPU preset (it costs more than the four LM layers).
- a vision probe (`unimodal/vision_probe.py`): its loss on the merged image tokens joins.

Left out on purpose: packing several examples into one row, and length buckets (tokenising
code rows apart from image rows saved less than `targets_only` and nothing on top of it).
"""

from __future__ import annotations

import torch

from unimodal.backbone import Backbone
from unimodal.stage0 import Example, collate, kind_losses, row_losses
from unimodal.vision_probe import Capture, TokenProbe, probe_loss


def target_losses(
    logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor, kinds: list[str]
) -> dict[str, torch.Tensor]:
    """`kind_losses` from logits (N, V) at the positions `at_targets(mask)` only: the same
    values without the (B, L, V) logits."""
    m = mask[:, 1:].bool()  # (B, L-1): position t predicts token t + 1
    rows = m.nonzero()[:, 0]  # (N,)
    ce = torch.nn.functional.cross_entropy(logits.float(), input_ids[:, 1:][m], reduction="none")
    per_row = torch.zeros(len(kinds), device=ce.device).index_add(0, rows, ce)  # (B,)
    return row_losses(per_row, m.sum(1).float(), kinds)


def at_targets(mask: torch.Tensor) -> torch.Tensor:
    """The positions (B, L) whose next token is a target of the loss mask (B, L)."""
    at = torch.zeros_like(mask, dtype=torch.bool)
    at[:, :-1] = mask[:, 1:].bool()
    return at


def batch_losses(
    model: torch.nn.Module,
    backbone: Backbone,
    examples: list[Example],
    device: torch.device | str,
    targets_only: bool = False,
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """`kind_losses` of a micro-batch and its image patch grids (n, 3), None without images."""
    prompt, mask = collate(backbone, examples)
    prompt, mask = prompt.to(device), mask.to(device)
    kinds, ids = [e.kind for e in examples], prompt.input_ids
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
    targets_only: bool = False,
    probe: TokenProbe | None = None,
    probe_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """The stage-0 losses of one micro-batch (`kind_losses` keys). `model` is the prepared
    (possibly wrapped) backbone; with `targets_only` its `forward` gets `at`, so the LM head
    runs at the target positions only. With a `probe`, `loss_probe` (the vision warm-up of
    vision_probe.py on the image rows' merged tokens) joins `loss` x `probe_weight`."""
    images = [e for e in examples if e.images]
    capture = Capture(backbone.model.model.visual) if probe is not None and images else None
    try:
        out, grid = batch_losses(model, backbone, examples, device, targets_only)
    finally:
        if capture is not None:
            capture.close()
    if capture is not None:
        scenes = [e.scene for e in images]
        out["loss_probe"] = probe_loss(probe, capture.value, scenes, grid)
        out["loss"] = out["loss"] + probe_weight * out["loss_probe"]
    return out
