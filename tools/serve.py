"""Serve a model folder over HTTP: the OpenAI-compatible API plus the web page at /.

    python tools/serve.py --model runs/gen_tiny/final            # http://127.0.0.1:8000/
    python tools/serve.py --model DIR --host 127.0.0.1 --port 8080 --max_steps=50 --max_n=2
    UNIMODAL_API_KEY=KEY python tools/serve.py --model DIR        # or --api_key=KEY
    python tools/serve.py --model BACKBONE --lora_dir=runs         # an RL rollout engine

The heads in DIR/heads/ are served as model ids `unimodal:<head>`; with `--lora_dir` adapter
folders under it can be hot-loaded (POST /v1/load_lora_adapter, vLLM's shape), which is how
`tools/train_azr.py --rl.engine=http` and `train_rm.py` keep the engine on the current head.

Every `ServeConfig` field (see unimodal/serve/limits.py) is a flag; `--help` lists them. With an
API key every /v1 request needs `Authorization: Bearer KEY` (the page asks for it, or takes it
from the address: http://127.0.0.1:8000/#key=KEY). Bound to loopback (the default), only
loopback Host headers are served; a public `--host` without a key prints a warning.
"""

from __future__ import annotations

import os
import sys

from unimodal.config import ConfigError, load_config
from unimodal.serve import ServeConfig, create_app
from unimodal.serve.limits import options_help

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def usage() -> str:
    return (
        f"{__doc__.strip()}\n\noptions (--name=value or --name value):\n{options_help(ServeConfig)}"
    )


def main(cfg: ServeConfig) -> None:
    import uvicorn

    from unimodal.pipeline import Pipeline

    if not cfg.model:
        raise SystemExit("serve: --model DIR is required (a folder from tools/train_gen.py)")
    keyed = bool(cfg.api_key or os.environ.get("UNIMODAL_API_KEY"))
    if cfg.host not in LOOPBACK and not keyed:
        print(f"warning: serving on {cfg.host} without an API key (--api_key)", file=sys.stderr)
    try:
        pipe = Pipeline.from_pretrained(cfg.model, device=cfg.device or None)
    except (OSError, ValueError) as e:
        raise SystemExit(f"serve: cannot load {cfg.model}: {e}") from None
    print(f"serving {cfg.model} as '{cfg.model_name}' on http://{cfg.host}:{cfg.port}/")
    if keyed:
        print("an API key is required on /v1 (the page asks for it)")
    uvicorn.run(create_app(pipe, cfg), host=cfg.host, port=cfg.port, log_level="info")


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(usage())
        raise SystemExit(0)
    try:
        config = load_config(ServeConfig, sys.argv[1:])
    except ConfigError as e:
        raise SystemExit(f"serve: {e}") from None
    main(config)
