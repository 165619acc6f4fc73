"""POST /v1/chat/completions: OpenAI's chat API over the backbone, plain or streamed (SSE).

Images arrive as data URLs in `image_url` parts and become `{"type": "image"}` parts plus a PIL
image each (decoded within the budgets of `unimodal.serve.imaging`), the form the chat template
takes; `developer` messages are sent as `system`. Sampling follows OpenAI's defaults
(temperature 1, top_p 1); `seed`, `stop`, `n` (choice i is sampled with seed + i; without a
seed the server draws one), `logprobs` / `top_logprobs` are honoured (see
`unimodal.serve.decoding`); `model` may name a LoRA head (`unimodal:judge`, see
`unimodal.serve.state`), which then answers. Streaming sends `chat.completion.chunk` objects as
server-sent events and ends with `data: [DONE]`; a client that hangs up stops the decoding
between tokens, streamed or not. Token counts in `usage` are exact (image tokens included in the prompt's).

Left out on purpose: tools / function calling, JSON mode, audio, penalties (each is a 400).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from PIL import Image

from unimodal.serve.decoding import Finish, Piece, Sampling, TokenLogprob
from unimodal.serve.imaging import ImageDecoder
from unimodal.serve.limits import ApiError, ServeConfig, check_range, check_reserved
from unimodal.serve.schemas import ERRORS, ChatMessage, ChatRequest, ChatResponse, Sampled
from unimodal.serve.state import ServerState, await_job, request_id, server_state, submit
from unimodal.serve.textjob import TextJob, collect, events, sse, stream

EVENT = {  # one server-sent event: data is a JSON chat.completion.chunk, or [DONE] at the end
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
}
SSE = {"content": {"text/event-stream": {"schema": EVENT}}}
router = APIRouter(tags=["chat"])


def to_pipeline(
    messages: list[ChatMessage],
    cfg: ServeConfig,
    reads_images: bool,
    reserved: re.Pattern | None,
    decoder: ImageDecoder,
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
        role = "system" if m.role == "developer" else m.role
        if isinstance(m.content, str):
            check_reserved(f"messages.{i}.content", m.content, reserved)
            out.append({"role": role, "content": m.content})
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
            images.append(decoder.data_url(part.image_url.url, where))
            parts.append({"type": "image"})
        out.append({"role": role, "content": parts})
    if chars > cfg.max_chat_chars:
        raise ApiError(400, f"messages hold {chars} characters; the limit is {cfg.max_chat_chars}")
    if chars == 0 and not images:
        raise ApiError(400, "messages hold no text and no image", "messages")
    return out, images


def samplings(
    body: Sampled, cfg: ServeConfig, max_tokens: int, top: int | None, stop_ids: tuple = ()
) -> list[Sampling]:
    """One `Sampling` per choice (`n`), checked against the limits; `top`: log-probs asked
    for with that many alternatives (None: no log-probs); `stop_ids`: more ending tokens."""
    check_range("temperature", body.temperature, 0, cfg.max_temperature)
    check_range("n", body.n, 1, cfg.max_n)
    check_range("seed", body.seed, 0, cfg.max_seed)
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    if any(not s for s in stop) or any(len(s) > 256 for s in stop):
        raise ApiError(400, "stop: each sequence must have 1 to 256 characters", "stop")
    seed = secrets.randbelow(cfg.max_seed + 1) if body.seed is None else body.seed
    temperature = 1.0 if body.temperature is None else float(body.temperature)
    top_p = 1.0 if body.top_p is None else float(body.top_p)
    processed = cfg.logprobs_mode == "processed_logprobs"
    return [
        Sampling(max_tokens, temperature, top_p, seed + i, stop, top is not None, top or 0,
                 stop_ids, processed)
        for i in range(body.n)
    ]  # fmt: skip


def chat_logprobs(tokens: list[TokenLogprob]) -> dict[str, Any]:
    """Chat's `logprobs` object: {"content": [{token, logprob, bytes, top_logprobs}]}."""
    content = [
        {
            "token": t.token,
            "logprob": t.logprob,
            "bytes": t.bytes,
            "top_logprobs": [{"token": s, "bytes": b, "logprob": v} for s, b, v in t.top],
        }
        for t in tokens
    ]
    return {"content": content, "refusal": None}


def _usage(finishes: list[Finish]) -> dict[str, int]:
    prompt = finishes[0].prompt_tokens if finishes else 0
    done = sum(f.completion_tokens for f in finishes)
    return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}


def _stream_response(
    job: TextJob, state: ServerState, rid: str, body: ChatRequest, release: Callable[[], None]
) -> StreamingResponse:
    """Server-sent events for `job`: role chunks at once, then pieces, finish and usage."""
    created, logprobs = int(time.time()), bool(body.logprobs)
    model = body.model or state.cfg.model_name
    head = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
    finishes: list[Finish] = []

    def chunk(index: int, item: Piece | Finish) -> list[dict]:
        if isinstance(item, Finish):
            finishes.append(item)
            choice = {"index": index, "delta": {}, "finish_reason": item.reason}
            return [head | {"choices": [choice | {"logprobs": None}]}]
        choice = {"index": index, "delta": {"content": item.text}, "finish_reason": None}
        choice["logprobs"] = chat_logprobs(item.logprobs) if logprobs else None
        return [head | {"choices": [choice]}]

    def end(extra: Any) -> list[dict]:
        usage = body.stream_options and body.stream_options.include_usage
        return [head | {"choices": [], "usage": _usage(finishes)}] if usage else []

    work, q = stream(job, state.pipe.backbone, asyncio.get_running_loop(), rid)
    submit(state, work)

    async def sent() -> Any:
        for i in range(len(job.choices)):  # at once, before any model work
            role = {"index": i, "delta": {"role": "assistant", "content": ""}}
            yield sse(head | {"choices": [role | {"finish_reason": None, "logprobs": None}]})
        async for event in events(job, work, q, chunk, end, release):
            yield event

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(sent(), media_type="text/event-stream", headers=headers)


@router.post("/v1/chat/completions", response_model=ChatResponse, responses={**ERRORS, 200: SSE})
async def chat_completions(body: ChatRequest, request: Request) -> Any:
    """OpenAI chat completions; `stream: true` answers with server-sent events."""
    state = server_state(request)
    cfg = state.cfg
    head = state.head_of(body.model)
    given = [t for t in (body.max_completion_tokens, body.max_tokens) if t is not None]
    max_tokens = given[0] if given else cfg.default_max_tokens
    check_range("max_tokens", max_tokens, 1, cfg.max_tokens)
    if body.top_logprobs and not body.logprobs:
        raise ApiError(400, "top_logprobs needs logprobs: true", "top_logprobs")
    top = (body.top_logprobs or 0) if body.logprobs else None
    choices = samplings(body, cfg, int(max_tokens), top)
    reads_images = bool(getattr(state.pipe.backbone, "is_vlm", False))
    decoder, streaming = state.decoder(), False
    try:
        messages, images = await asyncio.to_thread(  # image decoding off the event loop
            to_pipeline, body.messages, cfg, reads_images, state.reserved, decoder
        )
        # A queued job keeps only the reduced images (and the raw body): drop the data URLs
        # from the request model and from the parsed JSON that the request caches.
        body.messages = []
        (await request.json()).pop("messages", None)
        backbone = state.pipe.backbone
        prompts = lambda: [backbone.encode_chat([messages], [images])]  # noqa: E731
        job = TextJob(prompts, [(0, sp) for sp in choices], head=head)
        rid = f"chatcmpl-{request_id(request)}"
        if body.stream:
            response = _stream_response(job, state, rid, body, decoder.release)
            streaming = True
            return response
        results, _ = await await_job(request, state, collect(job, backbone), job.cancel)
    finally:
        if not streaming:
            decoder.release()
    out = []
    for i, c in enumerate(results):
        lp = chat_logprobs(c.logprobs) if body.logprobs else None
        msg = {"content": c.text}
        out.append({"index": i, "message": msg, "finish_reason": c.finish.reason, "logprobs": lp})
    usage = _usage([c.finish for c in results])
    model = body.model or cfg.model_name
    return ChatResponse(id=rid, created=int(time.time()), model=model, choices=out, usage=usage)
