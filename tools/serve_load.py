"""Load benchmark for the inference server; prints one JSON object.

    python tools/serve_load.py --url=http://127.0.0.1:8000          # a running server
    python tools/serve_load.py --model=runs/gen_tiny/final          # starts one on loopback
    python tools/serve_load.py --model=DIR --clients=32 --requests=512 --image_steps=2

The mix cycles through /health, /v1/models, chat (`chat_tokens` new tokens) and text-to-image
(`image_steps` steps); see `unimodal.serve.load`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from unimodal.config import ConfigError, load_config
from unimodal.serve.limits import options_help
from unimodal.serve.load import run_load, serve_in_thread


@dataclass
class LoadConfig:
    url: str = ""  # a running server; empty: start one from `model`
    model: str = ""
    clients: int = 32
    requests: int = 256
    timeout_s: float = 120.0
    chat_tokens: int = 4
    image_steps: int = 1


def main(cfg: LoadConfig) -> dict:
    kw = dict(timeout_s=cfg.timeout_s, chat_tokens=cfg.chat_tokens, image_steps=cfg.image_steps)
    if cfg.url:
        report = run_load(cfg.url, cfg.clients, cfg.requests, **kw)
    elif cfg.model:
        from unimodal.pipeline import Pipeline
        from unimodal.serve import ServeConfig, create_app

        pipe = Pipeline.from_pretrained(cfg.model)
        serve = ServeConfig(model=cfg.model, max_queue=max(64, 2 * cfg.clients))
        with serve_in_thread(create_app(pipe, serve)) as url:
            report = run_load(url, cfg.clients, cfg.requests, **kw)
    else:
        raise SystemExit("serve_load: give --url=URL of a server or --model=DIR to start one")
    out = {"bench": "serve_load", "clients": cfg.clients, **report.to_dict()}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(f"{__doc__.strip()}\n\noptions:\n{options_help(LoadConfig)}")
        raise SystemExit(0)
    try:
        main(load_config(LoadConfig, sys.argv[1:]))
    except ConfigError as e:
        raise SystemExit(f"serve_load: {e}") from None
