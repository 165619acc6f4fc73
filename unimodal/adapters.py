"""LoRA heads as PEFT adapter folders: the format vLLM's `--enable-lora` (and this project's
server) hot-load, and the `heads/<name>/` folders of a model export.

A folder holds `adapter_config.json` (peft_type LORA, r, lora_alpha, lora_dropout, the short
`target_modules` names, `exclude_modules` keeping vision towers out), `adapter_model.safetensors`
with PEFT's key names (`base_model.model.<module path>.lora_A.weight`, no adapter name) and, when
given, `head.json` with the caller's metadata (e.g. a judge head's prompt style). Loading reads
the same keys back under any head name. Left out on purpose: DoRA, rsLoRA, per-layer ranks,
`modules_to_save` (a folder that needs them is refused by name).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from unimodal.lora_heads import LoraHeads

CONFIG, WEIGHTS, META = "adapter_config.json", "adapter_model.safetensors", "head.json"
PREFIX = "base_model.model."
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
VISION = r".*(visual|vision_tower|vision_model).*"  # never adapted (unimodal.lora_heads)
UNSUPPORTED = ("use_dora", "use_rslora", "modules_to_save", "rank_pattern", "alpha_pattern")


def check_name(name: str) -> str:
    """A head name usable as a PEFT adapter name and a served model id (letters, digits, _ -)."""
    if not NAME.fullmatch(name):
        raise ValueError(f"head name {name!r}: use 1-64 letters, digits, '_' or '-'")
    return name


def is_adapter(folder: str | Path) -> bool:
    p = Path(folder)
    return (p / CONFIG).is_file() and (p / WEIGHTS).is_file()


def save_adapter(
    heads: LoraHeads, name: str, folder: str | Path, base_model: str = "", meta: dict | None = None
) -> Path:
    """Write head `name` as a PEFT adapter folder (atomic per file: temp name, then rename)."""
    from safetensors.torch import save_file

    spec = heads.lora_specs[name]
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model or None,
        "r": spec.r,
        "lora_alpha": spec.alpha,
        "lora_dropout": spec.dropout,
        "target_modules": list(spec.target_modules),
        "exclude_modules": VISION,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
    }
    tag = f".{name}."
    weights = {
        PREFIX + k.replace(f".lora_A{tag}", ".lora_A.").replace(f".lora_B{tag}", ".lora_B."): v
        for k, v in heads.lora_state_dict(name).items()
    }
    _write(out / WEIGHTS, lambda p: save_file({k: v.contiguous() for k, v in weights.items()}, p))
    _write(out / CONFIG, lambda p: Path(p).write_text(json.dumps(config, indent=2)))
    if meta is not None:
        _write(out / META, lambda p: Path(p).write_text(json.dumps(meta, indent=2)))
    return out


def _write(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(str(tmp))
    tmp.replace(path)


def read_config(folder: str | Path) -> dict[str, Any]:
    """The adapter's LoRA shape (r, alpha, dropout, target_modules), checked."""
    p = Path(folder)
    if not is_adapter(p):
        raise FileNotFoundError(f"no LoRA adapter in {p} (expected {CONFIG} and {WEIGHTS})")
    raw = json.loads((p / CONFIG).read_text())
    if raw.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{p / CONFIG}: peft_type {raw.get('peft_type')!r} is not LORA")
    if bad := [k for k in UNSUPPORTED if raw.get(k)]:
        raise ValueError(f"{p / CONFIG}: {', '.join(bad)} not supported")
    targets = raw.get("target_modules")
    if isinstance(targets, str):  # a regex: take the alternatives of its last group
        m = re.search(r"\(([\w|]+)\)\$?$", targets)
        targets = m[1].split("|") if m else None
    if not targets or not all(isinstance(t, str) for t in targets):
        raise ValueError(f"{p / CONFIG}: target_modules must list module names")
    r, alpha = int(raw["r"]), int(raw.get("lora_alpha", raw["r"]))
    return {"r": r, "alpha": alpha, "dropout": float(raw.get("lora_dropout", 0.0)),
            "target_modules": tuple(sorted(targets))}  # fmt: skip


def read_meta(folder: str | Path) -> dict[str, Any]:
    p = Path(folder) / META
    return json.loads(p.read_text()) if p.is_file() else {}


def load_adapter(
    heads: LoraHeads, folder: str | Path, name: str, inplace: bool = False
) -> dict[str, Any]:
    """Add the adapter in `folder` as head `name` (or, `inplace`, overwrite an existing head of
    the same shape); returns its metadata (`head.json`). Unknown or missing keys are errors."""
    from safetensors.torch import load_file

    check_name(name)
    shape = read_config(folder)
    raw = load_file(str(Path(folder) / WEIGHTS))
    state = {}
    for k, v in raw.items():
        key = k.removeprefix(PREFIX)
        key = re.sub(r"\.lora_([AB])(\.weight)$", rf".lora_\1.{name}\2", key)
        state[key] = v
    if name in heads.lora_names:
        if not inplace:
            raise ValueError(f"head '{name}' is already loaded")
        have = heads.lora_specs[name]
        if (have.r, tuple(sorted(have.target_modules))) != (shape["r"], shape["target_modules"]):
            raise ValueError(f"head '{name}': the adapter's shape differs from the loaded one")
    else:
        heads.add_lora(name, **shape)
    try:
        _check_state(heads.lora_state_dict(name), state, folder)
    except ValueError:
        if not inplace:
            heads.remove_lora(name)
        raise
    heads.load_lora_state_dict(name, state)
    return read_meta(folder)


def _check_state(mine: dict[str, torch.Tensor], state: dict[str, torch.Tensor], folder) -> None:
    """The adapter holds exactly this head's weights, shape for shape (never a base weight)."""
    if missing := sorted(set(mine) - set(state))[:3]:
        raise ValueError(f"adapter {folder}: missing weights {missing}")
    if unknown := sorted(set(state) - set(mine))[:3]:
        raise ValueError(f"adapter {folder}: weights that fit no LoRA layer here {unknown}")
    for k, v in state.items():
        if v.shape != mine[k].shape:
            raise ValueError(
                f"adapter {folder}: {k} has shape {tuple(v.shape)}, not {tuple(mine[k].shape)}"
            )
