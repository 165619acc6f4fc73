"""The inference server: OpenAI-compatible HTTP API and a web page over `Pipeline`.

    python tools/serve.py --model runs/gen_tiny/final      # then open http://127.0.0.1:8000/

`create_app(pipe, cfg)` builds the FastAPI app; `ServeConfig` holds every limit.
"""

from unimodal.serve.app import create_app
from unimodal.serve.limits import ServeConfig

__all__ = ["create_app", "ServeConfig"]
