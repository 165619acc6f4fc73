"""Atomic, resumable checkpoints: safetensors weights + training state + the resolved config.

Layout: `RUN/checkpoints/step_00000100/` holding one `NAME.safetensors` per weight group (e.g.
`trainable`, `ema`, `lora`), `train_state.pt` (optimizer, LR schedule, RNG states, data
position: tensors and plain Python values only, loaded with `weights_only=True`), `state.json`
and `config.toml`. A checkpoint is written into a temporary folder, every file fsynced, then
renamed into place, so a crash mid-save never corrupts the last good one. Only the newest
`keep` checkpoints are kept.

Left out on purpose: sharded (per-rank) optimizer states; FSDP users gather full state dicts
through accelerate before calling `save`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

PREFIX = "step_"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def rng_state() -> dict[str, Any]:
    """Python and torch RNG states (CUDA too when present)."""
    state: dict[str, Any] = {"python": list(random.getstate()[1]), "torch": torch.get_rng_state()}
    state["python_version"] = random.getstate()[0]
    state["python_gauss"] = random.getstate()[2]
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(
    run_dir: str | Path,
    step: int,
    weights: dict[str, dict[str, torch.Tensor]],
    train_state: dict[str, Any],
    config_toml: str,
    keep: int = 3,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write checkpoint `step` atomically under `run_dir/checkpoints`; prune to the newest `keep`."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".tmp_{PREFIX}{step:08d}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name, tensors in weights.items():
        flat, seen = {}, set()
        for k, v in tensors.items():
            v = v.detach().contiguous().cpu()
            if v.data_ptr() in seen:  # tied weights: safetensors stores each storage once
                v = v.clone()
            seen.add(v.data_ptr())
            flat[k] = v
        save_file(flat, tmp / f"{name}.safetensors")
    torch.save(train_state, tmp / "train_state.pt")
    (tmp / "config.toml").write_text(config_toml)
    (tmp / "state.json").write_text(json.dumps({"step": step, **(info or {})}, indent=2))
    for f in tmp.iterdir():
        _fsync_file(f)
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints under `run_dir`, oldest first (temporary folders are ignored)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / "state.json").is_file()]
    return sorted(done, key=lambda p: int(p.name[len(PREFIX) :]))


def latest(run_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def load_weights(ckpt: str | Path, name: str) -> dict[str, torch.Tensor]:
    path = Path(ckpt) / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt} has no '{name}' weights ({path})")
    return load_file(path)


def load_train_state(ckpt: str | Path) -> dict[str, Any]:
    return torch.load(Path(ckpt) / "train_state.pt", weights_only=True)


def load_info(ckpt: str | Path) -> dict[str, Any]:
    return json.loads((Path(ckpt) / "state.json").read_text())
