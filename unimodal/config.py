"""Typed configs: dataclasses filled from TOML files and `--section.field=value` overrides.

Every tool owns a root dataclass whose fields are nested dataclasses (sections) or plain values.
`load_config(Root, argv)` reads `--config FILE.toml` (a path, or a name in `configs/`), applies
overrides in order, and checks every key and type: an unknown key or a value of the wrong type is
a `ConfigError` naming the dotted key. `to_dict` / `to_toml` give the resolved config that is
printed at start (`--print-config` prints it and exits) and saved with every checkpoint.

A root class may name a TOML in `DEFAULT_CONFIG` (a `ClassVar`): it is the run used when no
`--config` is given (e.g. `train_gen.py` alone runs `configs/gen_tiny.toml`), so every setting of
an embedded default is visible in a file, and a run given `--config X` starts from the neutral
dataclass defaults, never from another run's settings.

A section class may offer named blocks of values in `PRESETS` (a `ClassVar` dict): `preset =
"NAME"` in that section applies the block, and the section's other keys override it (so four
TOMLs share one decoder description instead of pasting it). The resolved config spells out
every value, so a saved config never depends on a preset's later edits.

Left out on purpose: config inheritance between TOMLs, interpolation, environment variables.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from unimodal.config_toml import to_dict, to_toml  # noqa: F401 (re-exported)

T = TypeVar("T")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names the dotted key."""


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


@dataclasses.dataclass(frozen=True)
class _CliValue:
    """A command-line value: parsed as a TOML literal, but a string field takes the raw text."""

    raw: str
    parsed: Any


_UNIONS = (typing.Union, types.UnionType)

# Scalar field type -> (does a TOML value fit it, what the error message expects).
_SCALARS: dict[type, tuple[Callable[[Any], bool], str]] = {
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
    str: (lambda v: isinstance(v, str), "a string"),
}


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Check `value` against annotation `tp`, converting where it is lossless (int -> float)."""
    if isinstance(value, _CliValue) and tp is str:
        return value.raw
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in _UNIONS:
        return _coerce_union(key, tp, value)
    if isinstance(value, _CliValue):
        value = value.parsed
    if tp is Any:
        return value
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        return _coerce_sequence(key, tp, value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        item_tp = args[1] if len(args) == 2 else Any  # each value, command-line ones included
        return {k: _coerce(f"{key}.{k}", item_tp, v) for k, v in value.items()}
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a section (table), got {value!r}")
        return _build(tp, value, key)
    if tp in _SCALARS:
        fits, expected = _SCALARS[tp]
        if not fits(value):
            raise ConfigError(f"{key}: expected {expected}, got {value!r}")
        return float(value) if tp is float else value
    raise ConfigError(f"{key}: unsupported field type {_name(tp)}")


def _coerce_union(key: str, tp: Any, value: Any) -> Any:
    """The first member of union `tp` that accepts `value` (None for an optional's None)."""
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(key, arg, value)
        except ConfigError:
            pass
    if isinstance(value, _CliValue):
        value = value.raw
    raise ConfigError(f"{key}: {value!r} does not match {_name(tp)}")


def _coerce_sequence(key: str, tp: Any, value: Any) -> list[Any] | tuple[Any, ...]:
    """A list or tuple field: `list[X]`, `tuple[X, ...]` or a fixed-length `tuple[X, Y]`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected a list ({_name(tp)}), got {value!r}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
        items = [_coerce(f"{key}[{i}]", a, v) for i, (a, v) in enumerate(zip(args, value))]
    else:
        item_tp = args[0] if args else Any
        items = [_coerce(f"{key}[{i}]", item_tp, v) for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _section_defaults(cls: type) -> dict[str, dict[str, Any]]:
    """Defaults of the dataclass-valued fields of `cls`, as tables (a section's own defaults
    may differ from its class defaults, e.g. `train: TrainConfig = TrainConfig(steps=1500)`)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        elif f.default is not dataclasses.MISSING:
            value = f.default
        else:
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out[f.name] = dataclasses.asdict(value)
    return out


def _expand_presets(cls: type, table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Replace each section's `preset = NAME` (classes with a `PRESETS` table and no `preset`
    field) by the named block of values under the section's own keys, in every nested section,
    before any defaults are merged in (so a preset overrides defaults and loses to the TOML)."""
    fields = _fields(cls)
    presets = getattr(cls, "PRESETS", None)
    if presets and "preset" in table and "preset" not in fields:
        name, key = table["preset"], f"{prefix}.preset" if prefix else "preset"
        name = name.raw if isinstance(name, _CliValue) else name
        if not isinstance(name, str) or name not in presets:
            raise ConfigError(f"{key}: unknown preset {name!r} (one of {sorted(presets)})")
        table = _merge(presets[name], {k: v for k, v in table.items() if k != "preset"})
    out = dict(table)
    for k, v in table.items():
        if k in fields and _is_dataclass_type(fields[k]) and isinstance(v, dict):
            out[k] = _expand_presets(fields[k], v, f"{prefix}.{k}" if prefix else k)
    return out


def _build(cls: type[T], table: dict[str, Any], prefix: str = "") -> T:
    fields = _fields(cls)
    defaults = _section_defaults(cls)
    if not prefix:  # the root: presets of every nested section, once, before any defaults
        table = _expand_presets(cls, table)
    kwargs = {}
    for k, v in table.items():
        key = f"{prefix}.{k}" if prefix else k
        if k not in fields:
            raise ConfigError(f"unknown config key '{key}' (known: {', '.join(sorted(fields))})")
        if k in defaults and isinstance(v, dict):
            v = _merge(defaults[k], v)
        kwargs[k] = _coerce(key, fields[k], v)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{prefix or cls.__name__}: {e}") from None


def _parse_value(raw: str) -> _CliValue:
    """Command-line values are TOML literals; bare words are strings."""
    try:
        return _CliValue(raw, tomllib.loads(f"v = {raw}")["v"])
    except tomllib.TOMLDecodeError:
        return _CliValue(raw, raw)


def _set(table: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = table
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{dotted}: '{p}' is a value, not a section")
        node = nxt
    node[parts[-1]] = value


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_config_path(name: str) -> Path:
    """A TOML path as given, or a name (with or without .toml) in the project's `configs/`."""
    for cand in (Path(name), CONFIG_DIR / name, CONFIG_DIR / f"{name}.toml"):
        if cand.is_file():
            return cand
    raise ConfigError(f"config file not found: '{name}' (looked in . and {CONFIG_DIR})")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def load_config(cls: type[T], argv: list[str] | None = None, base: str | None = None) -> T:
    """Build `cls` from an optional TOML (`--config X` or `base`) plus `--a.b=v` overrides."""
    argv = list(argv or [])
    table: dict[str, Any] = {}
    overrides: list[tuple[str, Any]] = []
    config_name = base or getattr(cls, "DEFAULT_CONFIG", None)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument '{arg}': use --section.field=value")
        key, eq, raw = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ConfigError(f"--{key}: missing value (use --{key}=VALUE)")
            raw, i = argv[i + 1], i + 1
        if key == "config":
            config_name = raw
        else:
            overrides.append((key, _parse_value(raw)))
        i += 1
    if config_name:
        table = read_toml(resolve_config_path(config_name))
    for key, value in overrides:
        _set(table, key, value)
    return _build(cls, table)


def from_dict(cls: type[T], table: dict[str, Any]) -> T:
    """Rebuild a config from `to_dict` output (e.g. one saved next to a checkpoint)."""
    return _build(cls, table)


def merge_tables(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge two config tables, `extra` winning."""
    return _merge(base, extra)
