"""Locate a diffusers model inside a local folder (model folder or pipeline folder); no downloads."""

import json
from pathlib import Path


def resolve_pretrained(
    path: str, component: str, field: str, expected: tuple[str, ...]
) -> tuple[str, str | None]:
    """Return ``(folder, subfolder)`` for ``from_pretrained``; check the saved class name.

    ``path`` may be the model folder itself (holding ``config.json``) or a pipeline folder with the
    model under ``component/`` (e.g. ``transformer/``, ``vae/``). ``field`` names the config field in
    error messages; ``expected`` lists acceptable ``_class_name`` values.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{field}: no such local folder {path!r}")
    if (root / "config.json").is_file():
        config_file, subfolder = root / "config.json", None
    elif (root / component / "config.json").is_file():
        config_file, subfolder = root / component / "config.json", component
    else:
        raise FileNotFoundError(
            f"{field}: {path!r} has neither config.json nor {component}/config.json"
        )
    saved = json.loads(config_file.read_text()).get("_class_name")
    if saved is not None and saved not in expected:
        raise ValueError(
            f"{field}: {path!r} holds a {saved}, expected one of {', '.join(expected)}"
        )
    return str(root), subfolder
