"""Serve a model folder over HTTP: the OpenAI-compatible API plus the web page at /.

    python tools/serve.py --model runs/gen_tiny/final            # http://127.0.0.1:8000/
    python tools/serve.py --model DIR --host 127.0.0.1 --port 8080 --max_steps=50 --max_n=2

Every `ServeConfig` field (see unimodal/serve/limits.py) is a flag. The server has no
authentication: keep it on loopback or put an authenticating proxy in front.
"""

from __future__ import annotations

import sys

from unimodal.config import ConfigError, load_config
from unimodal.serve import ServeConfig, create_app

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def main(cfg: ServeConfig) -> None:
    import uvicorn

    from unimodal.pipeline import Pipeline

    if not cfg.model:
        raise SystemExit("serve: --model DIR is required (a folder from tools/train_gen.py)")
    if cfg.host not in LOOPBACK:
        print(f"warning: serving on {cfg.host} without authentication", file=sys.stderr)
    try:
        pipe = Pipeline.from_pretrained(cfg.model, device=cfg.device or None)
    except (OSError, ValueError) as e:
        raise SystemExit(f"serve: cannot load {cfg.model}: {e}") from None
    print(f"serving {cfg.model} as '{cfg.model_name}' on http://{cfg.host}:{cfg.port}/")
    uvicorn.run(create_app(pipe, cfg), host=cfg.host, port=cfg.port, log_level="info")


if __name__ == "__main__":
    try:
        config = load_config(ServeConfig, sys.argv[1:])
    except ConfigError as e:
        raise SystemExit(f"serve: {e}") from None
    main(config)
