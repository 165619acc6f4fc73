"""The command-line entry shared by every tool: parse the config, run, and turn user errors
(bad config, missing model folder, malformed data) into one clear line and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from flow_matching import BuildError
from unimodal.backbone import BackboneError
from unimodal.config import ConfigError, load_config, to_toml
from unimodal.encoders import EncoderError

# Raised for what the user chose (config, folders, data), before or while models are built;
# any other exception is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    BackboneError,
    BuildError,
    EncoderError,
    FileNotFoundError,
)


def run_tool(main: Callable[[Any], Any], config_cls: type, argv: list[str] | None = None) -> None:
    """`main(load_config(config_cls, argv))`, with user errors reported as `error: ...`;
    `--print-config` prints the resolved run as TOML and exits without running it."""
    from unimodal.data import DataError

    argv = list(sys.argv[1:] if argv is None else argv)
    show = "--print-config" in argv
    argv = [a for a in argv if a != "--print-config"]
    try:
        cfg = load_config(config_cls, argv)
        if show:
            print(to_toml(cfg), end="")
            return
        main(cfg)
    except (*USER_ERRORS, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
