"""Locate a diffusers model inside a local folder (model folder or pipeline folder); no downloads."""

import json
from pathlib import Path

import torch
from torch import nn


class BuildError(ValueError):
    """A decoder / VAE setting that does not fit the model it meets (a user error, reported as
    one line by the tools): wrong folder class, a grid the model cannot take, and the like."""


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
        raise BuildError(
            f"{field}: {path!r} holds a {saved}, expected one of {', '.join(expected)}"
        )
    return str(root), subfolder


def widen_input(transformer: nn.Module, extra: int) -> None:
    """Give a loaded SANA / SD3 transformer ``extra`` more input channels (reference latents)
    whose patch-embedding weights start at zero, as InstructPix2Pix widens ``conv_in``: it then
    computes exactly what it did. The new embedding is trainable whatever the train mode."""
    embed = getattr(transformer, "patch_embed", None) or transformer.pos_embed  # SANA | SD3
    proj = embed.proj  # Conv2d(C, Dh, p, stride=p)
    wide = nn.Conv2d(
        proj.in_channels + extra, proj.out_channels, proj.kernel_size, proj.stride,
        bias=proj.bias is not None, device=proj.weight.device, dtype=proj.weight.dtype,
    )  # fmt: skip
    with torch.no_grad():
        wide.weight.zero_()
        wide.weight[:, : proj.in_channels] = proj.weight  # (Dh, C + R, p, p)
        if proj.bias is not None:
            wide.bias.copy_(proj.bias)
    embed.proj = wide
    c = transformer.config
    transformer.register_to_config(
        in_channels=c.in_channels + extra, out_channels=c.out_channels or c.in_channels
    )
