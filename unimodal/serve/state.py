"""What every route shares: the pipeline, the limits, the worker, and waiting for a job.

`await_job` submits a job and waits for it while watching the client: a client that hangs up
before the worker reaches its job cancels the job, so abandoned requests cost no model time.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from fastapi import Request

from unimodal.serve.limits import ApiError, ServeConfig, reserved_pattern
from unimodal.serve.worker import Job, QueueFull, Worker


@dataclass
class ServerState:
    pipe: Any  # unimodal.pipeline.Pipeline (or anything with the same faces)
    cfg: ServeConfig
    worker: Worker
    started: float = field(default_factory=time.time)

    @cached_property
    def reserved(self) -> re.Pattern | None:
        """The tokenizer's control tokens, refused in user text (see `limits.check_reserved`)."""
        return reserved_pattern(getattr(self.pipe.backbone, "tokenizer", None))

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

    def capabilities(self) -> list[str]:
        caps = ["chat.completions"]
        if self.image_size is not None:
            caps.append("images.generations")
        if self.can_edit:
            caps.append("images.edits")
        return caps


class ClientGone(Exception):
    """The client disconnected while its job waited; nobody reads the answer."""


def server_state(request: Request) -> ServerState:
    return request.app.state.server


def submit(state: ServerState, job: Job) -> Job:
    try:
        return state.worker.submit(job)
    except QueueFull as e:
        raise ApiError(429, f"server busy: {e}; retry later", kind="rate_limit_error") from None


async def await_job(request: Request, state: ServerState, job: Job) -> Any:
    """Submit `job`, then wait for its result; raises `ClientGone` if the client hangs up."""
    submit(state, job)
    fut = asyncio.wrap_future(job.future)
    try:
        while True:
            done, _ = await asyncio.wait({fut}, timeout=state.cfg.disconnect_poll_s)
            if done:
                return fut.result()
            if await request.is_disconnected():
                raise ClientGone()
    finally:
        job.future.cancel()  # no effect once the worker has started (or finished) it
