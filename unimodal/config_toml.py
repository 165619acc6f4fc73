"""The resolved config written out: plain nested dicts (`to_dict`) and TOML (`to_toml`), the form
printed by `--print-config` and saved with every checkpoint (`unimodal.config` reads it back)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any


def to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved config as plain nested dicts (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=list))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def to_toml(cfg: Any) -> str:
    """Serialise a resolved config to TOML (None values are omitted: they are the defaults)."""
    out: list[str] = []

    def emit(d: dict[str, Any], section: str) -> None:
        plain = {k: v for k, v in d.items() if not isinstance(v, dict) and v is not None}
        tables = {k: v for k, v in d.items() if isinstance(v, dict)}
        if section and (plain or not tables):
            out.append(f"[{section}]")
        for k, v in plain.items():
            out.append(f"{k} = {_toml_value(v)}")
        if plain:
            out.append("")
        for k, v in tables.items():
            emit(v, f"{section}.{k}" if section else k)

    emit(to_dict(cfg), "")
    return "\n".join(out).strip() + "\n"
