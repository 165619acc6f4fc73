"""Optimizer parameter groups with their own learning-rate scale, chosen by name prefix.

Stage 0 trains a vision tower from scratch through an equally untrained LM; the gradient that
reaches the tower is weak and noisy, so it may take a larger step than the LM
(`train.vision_lr_scale`). The LR schedule multiplies every group's own base rate.
"""

from __future__ import annotations

from torch import nn

VISION_PREFIXES = ("model.visual.", "visual.")  # Qwen2-VL: tower blocks + patch merger


def lr_groups(module: nn.Module, lr: float, scales: dict[str, float]) -> list[dict]:
    """Trainable parameters of `module` as AdamW groups: each name starting with a key of
    `scales` gets `lr * scales[key]` (first match wins), the rest `lr`. Empty groups dropped."""
    buckets: dict[float, list[nn.Parameter]] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        scale = next((s for pre, s in scales.items() if name.startswith(pre)), 1.0)
        buckets.setdefault(scale, []).append(p)
    return [{"params": ps, "lr": lr * s} for s, ps in sorted(buckets.items()) if ps]


def vision_groups(model: nn.Module, lr: float, vision_lr_scale: float) -> list[dict]:
    """The groups of a Qwen2-VL model with the vision tower and merger at `vision_lr_scale`."""
    return lr_groups(model, lr, {pre: vision_lr_scale for pre in VISION_PREFIXES})
