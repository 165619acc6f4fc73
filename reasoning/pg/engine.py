"""Where RL rollouts are sampled: the trainer's own model (`hf`) or an inference engine (`http`).

`EngineConfig` is the `[rl]` section of `tools/train_azr.py` and `tools/train_rm.py`
(`--rl.engine=http --rl.engine_url=http://127.0.0.1:8000`); `make_engine` connects to the
engine and checks its tokenizer (None for `hf`); `publish` hot-loads the current head into it on
rank 0 and makes every process wait for that. With `hf` both are no-ops and rollouts keep the
trainer's log-probs, so the importance-sampling correction never applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasoning.pg.http_engine import HTTPEngine
from unimodal.backbone import Backbone
from unimodal.pg.importance import Correction

ENGINES = ("hf", "http")


@dataclass
class EngineConfig:
    """The rollout engine and the correction of its log-probs (`[rl]`, `[rl.correction]`)."""

    engine: str = "hf"  # hf: the trainer's model | http: an OpenAI-compatible completions server
    engine_url: str = ""  # http: the server's base URL, e.g. http://127.0.0.1:8000
    engine_model: str = ""  # http: the served base model id ("": the first of GET /v1/models)
    lora_dir: str = ""  # http: where heads are saved for the engine ("": OUT/engine_lora)
    request_batch: int = 16  # http: prompts per request
    concurrency: int = 8  # http: requests in flight
    timeout_s: float = 600.0  # http: per request
    retries: int = 3  # http: further tries of a request (connection errors, 429, 5xx)
    correction: Correction = field(default_factory=Correction)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"rl.engine: unknown '{self.engine}' ({' | '.join(ENGINES)})")
        if self.engine == "http" and not self.engine_url.startswith(("http://", "https://")):
            raise ValueError(f"rl.engine_url: an http(s):// URL is needed, got '{self.engine_url}'")
        if min(self.request_batch, self.concurrency) < 1 or self.retries < 0:
            raise ValueError("rl.request_batch and rl.concurrency must be >= 1, rl.retries >= 0")
        if self.timeout_s <= 0:
            raise ValueError(f"rl.timeout_s must be > 0, got {self.timeout_s}")


def make_engine(cfg: EngineConfig, out_dir: Path, backbone: Backbone) -> HTTPEngine | None:
    """The engine of `cfg`, connected and tokenizer-checked (None: sample with the trainer)."""
    if cfg.engine == "hf":
        return None
    engine = HTTPEngine(
        cfg.engine_url,
        cfg.lora_dir or Path(out_dir) / "engine_lora",
        cfg.engine_model,
        cfg.request_batch,
        cfg.concurrency,
        cfg.timeout_s,
        cfg.retries,
    )
    engine.check_tokenizer(backbone)
    return engine


def publish(
    engine: HTTPEngine | None, backbone: Backbone, head: str, step: int, accelerator: Any
) -> None:
    """Hot-load head `head` after `step` updates (rank 0 loads, every rank waits, then all use
    the new adapter); nothing without an engine."""
    if engine is None:
        return
    if accelerator.is_main_process:
        engine.publish(backbone, head, f"step{step}")
    accelerator.wait_for_everyone()
    engine.publish(backbone, head, f"step{step}", main=False)
