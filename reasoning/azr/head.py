"""Attach a trained Absolute Zero LoRA head to a backbone (for evaluation).

A run folder's checkpoints (`unimodal.checkpoint`) hold the head's `lora` weights and the
resolved `config.toml`. The head's name and LoRA shape are read from that TOML directly
(`tomllib`), not through a training config class, so old checkpoints stay loadable when the
class changes: a `[head]` section (name, r, alpha, dropout, target_modules) when present, else
`model.lora_r / lora_alpha / lora_dropout / target_modules` and `azr.head`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from unimodal import checkpoint
from unimodal.backbone import Backbone
from unimodal.lora_heads import LoraHeadConfig

DEFAULT_NAME = "azr"


def head_spec(config: dict[str, Any]) -> LoraHeadConfig:
    """The head's name and LoRA shape from a resolved training config (parsed TOML)."""
    d = LoraHeadConfig()
    if isinstance(config.get("head"), dict):
        h = config["head"]
        name, r, alpha = h.get("name", DEFAULT_NAME), h.get("r", d.r), h.get("alpha", d.alpha)
        dropout, targets = h.get("dropout", d.dropout), h.get("target_modules", d.target_modules)
    else:
        m = config.get("model", {})
        name = config.get("azr", {}).get("head", DEFAULT_NAME)
        r, alpha = m.get("lora_r", d.r), m.get("lora_alpha", d.alpha)
        dropout, targets = (
            m.get("lora_dropout", d.dropout),
            m.get("target_modules", d.target_modules),
        )
    return LoraHeadConfig(name, int(r), int(alpha), float(dropout), tuple(targets))


def load_head(backbone: Backbone, run_or_ckpt: str | Path) -> str:
    """Attach the AZR head of a run folder (its newest checkpoint) or of a checkpoint; its name.

    `with backbone.lora(load_head(bb, "runs/azr_small")): evaluate_cruxeval(...)`.
    """
    ckpt: Path | None = Path(run_or_ckpt)
    if not (ckpt / "state.json").is_file():
        ckpt = checkpoint.latest(ckpt)
        if ckpt is None:
            raise FileNotFoundError(f"no AZR checkpoint under {run_or_ckpt}")
    with open(ckpt / "config.toml", "rb") as fh:
        spec = head_spec(tomllib.load(fh))
    backbone.add_lora(spec.name, spec.r, spec.alpha, spec.dropout, spec.target_modules)
    backbone.load_lora_state_dict(spec.name, checkpoint.load_weights(ckpt, "lora"))
    return spec.name
