"""Text jobs for the worker, shared by chat and completions: choices, collecting and streaming.

A `TextJob` encodes its prompts on the worker thread (the processor runs there, next to the
model) and decodes its choices one after another (`unimodal.serve.decoding.decode`); every
piece goes to an `emit(index, item)` callback. A job names the LoRA head it samples with
(`head`, None: the base model); the head is on only while the job runs on the worker.
`collect` gathers the pieces into whole choices for a plain answer; `stream` forwards them to
the event loop for server-sent events. Setting
`job.cancel` stops the decoding between tokens: the route sets it when the client hangs up,
whether the answer was streamed or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from unimodal.backbone import Prompt
from unimodal.serve.decoding import Finish, Piece, Sampling, TokenLogprob, decode
from unimodal.serve.limits import ApiError
from unimodal.serve.worker import Job

log = logging.getLogger("unimodal.serve")
Emit = Callable[[int, Piece | Finish], None]


@dataclass
class TextJob:
    """Prompts (built on the worker) and the choices to sample: (prompt index, sampling)."""

    prompts: Callable[[], list[Prompt]]
    choices: list[tuple[int, Sampling]]
    cancel: threading.Event = field(default_factory=threading.Event)
    extra: Callable[[list[Prompt]], Any] | None = None  # more work on the prompts (echo)
    head: str | None = None  # the LoRA head to sample with (None: the base model)

    def run(self, backbone: Any, emit: Emit) -> Any:
        if self.head is not None and self.head not in backbone.lora_names:  # unloaded meanwhile
            raise ApiError(
                404, f"model head '{self.head}' was unloaded", "model", "model_not_found"
            )
        on = backbone.lora(self.head) if self.head is not None else contextlib.nullcontext()
        with on:
            prompts = [p.to(backbone.device) for p in self.prompts()]
            extra = self.extra(prompts) if self.extra else None
            for index, (which, sampling) in enumerate(self.choices):
                for item in decode(backbone, prompts[which], sampling, self.cancel):
                    emit(index, item)
        return extra


@dataclass
class Choice:
    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish: Finish | None = None
    ids: list[int] = field(default_factory=list)


def collect(job: TextJob, backbone: Any) -> Job:
    """A worker job whose result is (choices, extra) once every choice is done."""

    def run(payloads: list[TextJob]) -> list[tuple[list[Choice], Any]]:
        choices = [Choice() for _ in job.choices]

        def emit(index: int, item: Piece | Finish) -> None:
            if isinstance(item, Finish):
                choices[index].finish = item
                return
            choices[index].text += item.text
            choices[index].logprobs += item.logprobs
            choices[index].ids += item.ids

        extra = job.run(backbone, emit)
        return [(choices, extra)]

    return Job(job, run)


def stream(job: TextJob, backbone: Any, loop: asyncio.AbstractEventLoop, rid: str):
    """(worker job, queue): the job puts ("item", (index, item)), then ("end", extra) or
    ("error", message) into the queue as it decodes."""
    q: asyncio.Queue = asyncio.Queue()

    def push(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(q.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is gone: nobody is listening
            job.cancel.set()

    def run(payloads: list[TextJob]) -> list[None]:
        try:
            extra = job.run(backbone, lambda i, item: push("item", (i, item)))
            push("end", extra)
        except Exception:
            log.exception("request %s: streamed job failed", rid)
            push("error", f"internal error (request id {rid})")
            raise
        return [None]

    return Job(job, run), q


def sse(body: dict) -> str:
    return "data: " + json.dumps(body) + "\n\n"


async def events(
    job: TextJob,
    work: Job,
    q: asyncio.Queue,
    chunk: Callable[[int, Piece | Finish], list[dict]],
    end: Callable[[Any], list[dict]],
    done: Callable[[], None],
) -> AsyncIterator[str]:
    """Server-sent events: `chunk` turns each item into bodies, `end` adds the last ones."""
    try:
        while True:
            kind, value = await q.get()
            if kind == "item":
                for body in chunk(*value):
                    yield sse(body)
                continue
            if kind == "error":
                yield sse({"error": {"message": value, "type": "server_error", "code": 500}})
                break
            for body in end(value):
                yield sse(body)
            break
        yield "data: [DONE]\n\n"
    finally:  # also on cancellation when the client disconnects
        job.cancel.set()
        work.future.cancel()
        done()
