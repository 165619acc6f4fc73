"""POST /v1/chat/completions: OpenAI's chat API over `Pipeline.chat`, plain or streamed (SSE).

Images arrive as data URLs in `image_url` parts and become `{"type": "image"}` parts plus a PIL
image each, the form `Pipeline.chat` takes. Streaming sends `chat.completion.chunk` objects as
server-sent events and ends with `data: [DONE]`; a client that hangs up stops the decoding
between pieces. Token counts in `usage` re-tokenise the text (close, not exact; image tokens
are not counted).

Left out on purpose: n > 1, tools / function calling, logprobs, stop sequences.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from PIL import Image

from unimodal.serve.limits import (
    ApiError,
    ServeConfig,
    check_model,
    check_range,
    check_reserved,
    decode_data_url,
)
from unimodal.serve.schemas import ERRORS, ChatMessage, ChatRequest, ChatResponse
from unimodal.serve.state import ServerState, await_job, server_state, submit
from unimodal.serve.worker import Job

EVENT = {  # one server-sent event: data is a JSON chat.completion.chunk, or [DONE] at the end
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
}
SSE = {"content": {"text/event-stream": {"schema": EVENT}}}
router = APIRouter(tags=["chat"])


@dataclass
class ChatJob:
    messages: list[dict[str, Any]]
    images: list[Image.Image]
    max_tokens: int
    temperature: float
    stop: threading.Event = field(default_factory=threading.Event)


def to_pipeline(
    messages: list[ChatMessage], cfg: ServeConfig, reads_images: bool, reserved: re.Pattern | None
) -> tuple[list[dict[str, Any]], list[Image.Image]]:
    """OpenAI messages -> (chat-template messages, their images in order), within the limits."""
    if len(messages) > cfg.max_messages:
        raise ApiError(
            400, f"{len(messages)} messages; the limit is {cfg.max_messages}", "messages"
        )
    out: list[dict[str, Any]] = []
    images: list[Image.Image] = []
    chars = 0
    for i, m in enumerate(messages):
        if isinstance(m.content, str):
            check_reserved(f"messages.{i}.content", m.content, reserved)
            out.append({"role": m.role, "content": m.content})
            chars += len(m.content)
            continue
        parts: list[dict[str, Any]] = []
        for j, part in enumerate(m.content):
            where = f"messages.{i}.content.{j}"
            if part.type == "text":
                check_reserved(where, part.text, reserved)
                parts.append({"type": "text", "text": part.text})
                chars += len(part.text)
                continue
            if not reads_images:
                raise ApiError(400, f"{where}: this model reads text only", where)
            if len(images) >= cfg.max_images_per_chat:
                raise ApiError(
                    400, f"more than {cfg.max_images_per_chat} images in one request", where
                )
            images.append(decode_data_url(part.image_url.url, cfg, where))
            parts.append({"type": "image"})
        out.append({"role": m.role, "content": parts})
    if chars > cfg.max_chat_chars:
        raise ApiError(400, f"messages hold {chars} characters; the limit is {cfg.max_chat_chars}")
    if chars == 0 and not images:
        raise ApiError(400, "messages hold no text and no image", "messages")
    return out, images


def _count(pipe: Any, text: str) -> int:
    return len(pipe.backbone.tokenizer(text, add_special_tokens=False)["input_ids"])


def _usage(pipe: Any, job: ChatJob, answer: str) -> dict[str, int]:
    prompt = _count(pipe, pipe.backbone.render(job.messages))
    done = min(_count(pipe, answer), job.max_tokens)  # re-tokenising may split differently
    return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}


def _answer(pipe: Any, jobs: list[ChatJob]) -> list[tuple[str, dict[str, int]]]:
    (job,) = jobs
    text = pipe.chat(job.messages, job.images or None, False, job.max_tokens, job.temperature)
    return [(text, _usage(pipe, job, text))]


def _chunk(rid: str, created: int, model: str, delta: dict, finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
    return "data: " + json.dumps(body | {"choices": [choice]}) + "\n\n"


def _stream_job(
    state: ServerState, job: ChatJob, loop: asyncio.AbstractEventLoop, q: asyncio.Queue
) -> Job:
    """A worker job that decodes piece by piece into `q`, stopping when `job.stop` is set."""

    def push(item: tuple[str, Any]) -> None:
        try:
            loop.call_soon_threadsafe(q.put_nowait, item)
        except RuntimeError:  # the event loop is gone: nobody is listening
            job.stop.set()

    def run(jobs: list[ChatJob]) -> list[None]:
        try:
            pieces = []
            stream = state.pipe.chat(
                job.messages, job.images or None, True, job.max_tokens, job.temperature
            )
            for piece in stream:
                if job.stop.is_set():
                    break
                pieces.append(piece)
                push(("piece", piece))
            push(("end", _usage(state.pipe, job, "".join(pieces))))
        except Exception as e:
            push(("error", f"{type(e).__name__}: {e}"))
            raise
        return [None]

    return Job(job, run)


async def _events(
    state: ServerState, job: ChatJob, work: Job, q: asyncio.Queue, usage: bool
) -> AsyncIterator[str]:
    rid, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), state.cfg.model_name
    try:
        yield _chunk(rid, created, model, {"role": "assistant", "content": ""})
        while True:
            kind, value = await q.get()
            if kind == "piece":
                yield _chunk(rid, created, model, {"content": value})
                continue
            if kind == "error":
                error = {"error": {"message": value, "type": "server_error", "code": 500}}
                yield "data: " + json.dumps(error) + "\n\n"
                break
            finish = "length" if value["completion_tokens"] >= job.max_tokens else "stop"
            yield _chunk(rid, created, model, {}, finish)
            if usage:
                body = {"id": rid, "object": "chat.completion.chunk", "created": created}
                body |= {"model": model, "choices": [], "usage": value}
                yield "data: " + json.dumps(body) + "\n\n"
            break
        yield "data: [DONE]\n\n"
    finally:  # also on cancellation when the client disconnects
        job.stop.set()
        work.future.cancel()


@router.post("/v1/chat/completions", response_model=ChatResponse, responses={**ERRORS, 200: SSE})
async def chat_completions(body: ChatRequest, request: Request) -> Any:
    """OpenAI chat completions; `stream: true` answers with server-sent events."""
    state = server_state(request)
    cfg = state.cfg
    check_model(cfg, body.model)
    max_tokens = body.max_completion_tokens or body.max_tokens or cfg.default_max_tokens
    check_range("max_tokens", max_tokens, 1, cfg.max_tokens)
    temperature = 0.0 if body.temperature is None else body.temperature
    check_range("temperature", temperature, 0, cfg.max_temperature)
    reads_images = bool(getattr(state.pipe.backbone, "is_vlm", False))
    messages, images = await asyncio.to_thread(  # image decoding off the event loop
        to_pipeline, body.messages, cfg, reads_images, state.reserved
    )
    job = ChatJob(messages, images, int(max_tokens), float(temperature))
    if body.stream:
        q: asyncio.Queue = asyncio.Queue()
        work = submit(state, _stream_job(state, job, asyncio.get_running_loop(), q))
        usage = bool(body.stream_options and body.stream_options.include_usage)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        events = _events(state, job, work, q, usage)
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    work = Job(job, lambda jobs: _answer(state.pipe, jobs))
    text, usage = await await_job(request, state, work)
    finish = "length" if usage["completion_tokens"] >= job.max_tokens else "stop"
    return ChatResponse(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=cfg.model_name,
        choices=[{"index": 0, "message": {"content": text}, "finish_reason": finish}],
        usage=usage,
    )
