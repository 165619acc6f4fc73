"""What every route shares: the pipeline, the limits, the worker, and waiting for a job.

Model ids: the base model is `cfg.model_name`; every LoRA head is its own id as well (the way
vLLM serves adapters): `<model_name>:<head>` for the heads of the model folder and for
hot-loaded adapters, which also answer to their bare `lora_name` (`head_of` maps an id to its
head, `models` lists them all).

`await_job` submits a job and waits for it while watching the client: a client that hangs up
before the worker reaches its job cancels the job, so abandoned requests cost no model time;
one that hangs up while its job runs sets the job's `cancel` event (text jobs stop between
tokens; an image call that has started runs to its end).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from fastapi import Request

from unimodal.serve.imaging import DecodeBudget, ImageDecoder
from unimodal.serve.limits import ApiError, ServeConfig, added_tokens, busy, reserved_pattern, short
from unimodal.serve.worker import Job, QueueFull, Worker

VISION = re.compile(r"image|video|vision")  # tokens that need pixel inputs


@dataclass
class ServerState:
    pipe: Any  # unimodal.pipeline.Pipeline (or anything with the same faces)
    cfg: ServeConfig
    worker: Worker
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        """What the routes need from the tokenizer, read once here: the tokenizer is not safe to
        use from another thread while the worker encodes with it."""
        self.budget = DecodeBudget(self.cfg.max_decode_bytes_total)
        tok = getattr(self.pipe.backbone, "tokenizer", None)
        tokens = added_tokens(tok)
        self.reserved = reserved_pattern(tokens)  # refused in chat text (`limits.check_reserved`)
        vision = [t for t in tokens if VISION.search(t)]  # stand for pixels
        self.vision_tokens = reserved_pattern(vision)  # refused in raw completion prompts
        self.vision_ids = {tok.convert_tokens_to_ids(t) for t in vision} if tok else set()
        self.vocab_size = len(tok) if tok is not None else 0
        self.builtin = list(getattr(self.pipe, "heads", None) or {})  # heads of the model folder
        self.adapters: dict[str, str] = {}  # hot-loaded adapter name -> its folder

    def models(self, aliases: bool = False) -> list[tuple[str, str | None, str | None]]:
        """(model id, head or None, adapter folder or None) of everything served; `aliases`
        adds `<model_name>:<lora_name>` for hot-loaded adapters (accepted, not listed)."""
        base = self.cfg.model_name
        out: list[tuple[str, str | None, str | None]] = [(base, None, None)]
        out += [(f"{base}:{h}", h, None) for h in self.builtin]
        for name, path in list(self.adapters.items()):
            out += [(name, name, path)] + ([(f"{base}:{name}", name, path)] if aliases else [])
        return out

    def head_of(self, model: str | None) -> str | None:
        """The LoRA head that `model` names (None: the base model); a 404 for unknown ids."""
        if model is None or model == self.cfg.model_name:
            return None
        for served, head, _ in self.models(aliases=True):
            if served == model:
                return head
        ids = ", ".join(f"'{m}'" for m, _, _ in self.models()[:8])
        msg = f"unknown model {short(model)}; this server serves {ids} (see GET /v1/models)"
        raise ApiError(404, msg, "model", "model_not_found")

    @property
    def image_size(self) -> int | None:
        """Side of the images the model draws, None when it has no generator."""
        gen = getattr(self.pipe, "generator", None)
        return None if gen is None else int(gen.cfg.resolutions[-1])

    @property
    def can_edit(self) -> bool:
        gen = getattr(self.pipe, "generator", None)
        trained = gen is not None and bool(getattr(gen.cfg, "edit", False))
        return trained and callable(getattr(self.pipe, "edit", None))

    @cached_property
    def keep_pixels(self) -> int:
        """Pixels of an input image that the model uses at most (the processor's max_pixels,
        or the generator's square for edits, whichever is larger)."""
        proc = getattr(getattr(self.pipe.backbone, "processor", None), "image_processor", None)
        size = getattr(proc, "size", None)
        most = getattr(proc, "max_pixels", None) or getattr(size, "longest_edge", None)
        if most is None and isinstance(size, dict):
            most = size.get("longest_edge") or size.get("max_pixels")
        most = int(most or 1 << 20)
        return max(most, (self.image_size or 0) ** 2)

    def decoder(self) -> ImageDecoder:
        """An image decoder for one request, within the per-request and shared budgets."""
        return ImageDecoder(self.cfg, self.budget, self.keep_pixels)

    def capabilities(self) -> list[str]:
        caps = ["chat.completions", "completions"]
        if self.image_size is not None:
            caps.append("images.generations")
        if self.can_edit:
            caps.append("images.edits")
        return caps


class ClientGone(Exception):
    """The client disconnected while its job waited; nobody reads the answer."""


def server_state(request: Request) -> ServerState:
    return request.app.state.server


def request_id(request: Request) -> str:
    return request.scope.get("request_id", "req-unknown")


def submit(state: ServerState, job: Job) -> Job:
    try:
        return state.worker.submit(job)
    except QueueFull as e:
        raise busy(str(e), state.cfg) from None


async def await_job(
    request: Request, state: ServerState, job: Job, cancel: threading.Event | None = None
) -> Any:
    """Submit `job`, then wait for its result; raises `ClientGone` if the client hangs up
    (after setting `cancel`, which a running text job checks between tokens)."""
    submit(state, job)
    fut = asyncio.wrap_future(job.future)
    try:
        while True:
            done, _ = await asyncio.wait({fut}, timeout=state.cfg.disconnect_poll_s)
            if done:
                return fut.result()
            if await request.is_disconnected():
                if cancel is not None:
                    cancel.set()
                raise ClientGone()
    finally:
        job.future.cancel()  # no effect once the worker has started (or finished) it
