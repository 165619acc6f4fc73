"""POST /v1/completions: raw prompt in, text and per-token log-probs out (vLLM's shape).

The route rollout engines are driven by: `prompt` is text, token ids, or a list of either (a
batch); each prompt gets `n` choices, choice j sampled with seed + j (index p * n + j in the
answer). The prompt is tokenised as it is (no chat template), so chat markers are allowed;
only tokens that stand for pixels (`<|image_pad|>`, `<|vision_start|>`, ...) are refused.
`logprobs` = k (0-20) returns each sampled token's log-prob and its k most likely alternatives
(OpenAI's legacy layout: tokens, token_logprobs, top_logprobs, text_offset); `echo` puts the
prompt (and its tokens' log-probs; the first is null) in front, and with `max_tokens: 0` only
scores the prompt. Log-probs are the model's, before temperature and top-p (vLLM's default).
Defaults as OpenAI's: max_tokens 16, temperature 1, top_p 1. vLLM's extensions for RL engines:
`return_tokens_as_token_ids` (log-prob tokens written "token_id:N"), `return_token_ids` (each
choice gets `prompt_token_ids` and `token_ids`, the ending stop token included) and
`stop_token_ids`; `model` may name a LoRA head (`unimodal.serve.state`).

Left out on purpose: `suffix` (insertion), `best_of` other than n, streaming with echo.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import torch
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from unimodal.backbone import Prompt
from unimodal.serve.chat import SSE, samplings
from unimodal.serve.decoding import Finish, Piece, TokenLogprob, prompt_logprobs
from unimodal.serve.limits import ApiError, check_range, check_reserved
from unimodal.serve.schemas import ERRORS, Sampled, Usage
from unimodal.serve.state import ServerState, await_job, request_id, server_state, submit
from unimodal.serve.textjob import Choice, TextJob, collect, events, stream

router = APIRouter(tags=["completions"])
PromptIn = str | list[int] | list[str] | list[list[int]]


class CompletionRequest(Sampled):
    prompt: PromptIn = Field(description="text, token ids, or a list of either (a batch)")
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20, description="top alternatives per token")
    suffix: None = Field(None, description="not supported")
    best_of: int | None = Field(None, ge=1, description="only equal to n")
    return_tokens_as_token_ids: bool = Field(False, description='log-prob tokens as "token_id:N"')
    return_token_ids: bool = Field(False, description="prompt_token_ids and token_ids per choice")
    stop_token_ids: list[int] | None = Field(None, max_length=64, description="ending tokens")


class LegacyLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: LegacyLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None
    prompt_token_ids: list[int] | None = None
    token_ids: list[int] | None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


def _prompts(state: ServerState, prompt: PromptIn) -> list[str | list[int]]:
    """Every prompt, checked: not empty, within the limits, known ids, no pixel tokens (the
    tokenizer itself is used on the worker thread only)."""
    cfg = state.cfg
    many = isinstance(prompt, list) and bool(prompt) and not isinstance(prompt[0], int)
    out = []
    for i, p in enumerate(prompt if many else [prompt]):
        where = f"prompt.{i}" if many else "prompt"
        if not p:
            raise ApiError(400, f"{where} is empty", where)
        if len(p) > cfg.max_chat_chars:
            unit = "characters" if isinstance(p, str) else "tokens"
            msg = f"{where} has {len(p)} {unit}; the limit is {cfg.max_chat_chars}"
            raise ApiError(400, msg, where)
        if isinstance(p, str):
            check_reserved(where, p, state.vision_tokens)
        elif bad := [t for t in p if not 0 <= t < state.vocab_size or t in state.vision_ids][:1]:
            msg = f"{where}: token {bad[0]} is not a text token of this model"
            msg += f" (vocabulary {state.vocab_size})"
            raise ApiError(400, msg, where)
        out.append(p)
    return out


def _encode(tokenizer: Any, prompts: list[str | list[int]]) -> list[Prompt]:
    """One-row prompts (on the worker): text is tokenised as it is, ids are taken as they are."""
    out = []
    for p in prompts:
        ids = tokenizer(p)["input_ids"] if isinstance(p, str) else p
        if not ids:
            raise ApiError(400, "a prompt has no tokens", "prompt")
        out.append(Prompt(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), {}))
    return out


def _legacy(tokens: list[TokenLogprob], start: int = 0, as_ids: bool = False) -> dict[str, list]:
    """OpenAI's legacy log-probs: tokens, token_logprobs, top_logprobs, text_offset; `as_ids`
    writes tokens as "token_id:N" (vLLM's return_tokens_as_token_ids)."""
    out: dict[str, list] = {k: [] for k in LegacyLogprobs.model_fields}
    for t in tokens:
        out["tokens"].append(f"token_id:{t.id}" if as_ids else t.token)
        out["token_logprobs"].append(t.logprob)
        names = [f"token_id:{i}" for i in t.top_ids] if as_ids else [s for s, _, _ in t.top]
        top = None if t.logprob is None else {n: v for n, (_, _, v) in zip(names, t.top)}
        out["top_logprobs"].append(top)
        out["text_offset"].append(start)
        start += len(t.token)
    return out


def _echo(backbone: Any, top: int | None, echo: bool):
    """Work for the worker: each prompt's text, its tokens' log-probs (`echo` with log-probs)
    and its token ids."""

    def extra(prompts: list[Prompt]) -> list[tuple[str, list[TokenLogprob], list[int]]]:
        out = []
        for p in prompts:
            ids = p.input_ids[0].tolist()
            lps = prompt_logprobs(backbone, p, top) if echo and top is not None else []
            out.append((backbone.tokenizer.decode(ids) if echo else "", lps, ids))
        return out

    return extra


def _prompt_tokens(finishes: list[Finish], n: int) -> int:
    """Prompt tokens of a request: each prompt once (choice p * n is its first)."""
    return sum(f.prompt_tokens for i, f in enumerate(finishes) if i % n == 0)


def _usage(prompt_tokens: int, done: int) -> dict[str, int]:
    total = prompt_tokens + done
    return {"prompt_tokens": prompt_tokens, "completion_tokens": done, "total_tokens": total}


def _choice(index: int, text: str, legacy: dict | None, reason: str | None) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": legacy, "finish_reason": reason}


@router.post("/v1/completions", response_model=CompletionResponse, responses={**ERRORS, 200: SSE})
async def completions(body: CompletionRequest, request: Request) -> Any:
    """Text completion with per-token log-probs (OpenAI's legacy API, as vLLM serves it)."""
    state = server_state(request)
    cfg = state.cfg
    head = state.head_of(body.model)
    max_tokens = 16 if body.max_tokens is None else body.max_tokens
    check_range("max_tokens", max_tokens, 0 if body.echo else 1, cfg.max_tokens)
    if body.best_of not in (None, body.n):
        raise ApiError(400, "best_of: only equal to n is supported", "best_of")
    if body.stream and (body.echo or body.return_token_ids):
        what = "echo" if body.echo else "return_token_ids"
        raise ApiError(400, f"{what} is not supported with stream", what)
    texts = _prompts(state, body.prompt)
    if len(texts) * body.n > cfg.max_completion_choices:
        msg = f"{len(texts)} prompts x n = {body.n}: more than {cfg.max_completion_choices} choices"
        raise ApiError(400, msg, "n")
    stop_ids = tuple(body.stop_token_ids or ())
    if bad := [t for t in stop_ids if not 0 <= t < state.vocab_size][:1]:
        raise ApiError(
            400, f"stop_token_ids: {bad[0]} is not a token of this model", "stop_token_ids"
        )
    top, backbone = body.logprobs, state.pipe.backbone
    choices = samplings(body, cfg, int(max_tokens), top, stop_ids)
    pairs = [(p, sp) for p in range(len(texts)) for sp in choices]
    extra = _echo(backbone, top, body.echo) if body.echo or body.return_token_ids else None
    job = TextJob(lambda: _encode(backbone.tokenizer, texts), pairs, extra=extra, head=head)
    rid = f"cmpl-{request_id(request)}"
    if body.stream:
        return _stream(job, state, rid, body)
    results, echoed = await await_job(request, state, collect(job, backbone), job.cancel)
    out = [
        _answer(i, c, echoed[i // body.n] if echoed else None, body) for i, c in enumerate(results)
    ]
    finishes = [c.finish for c in results]
    usage = _usage(_prompt_tokens(finishes, body.n), sum(f.completion_tokens for f in finishes))
    created, model = int(time.time()), body.model or cfg.model_name
    return CompletionResponse(id=rid, created=created, model=model, choices=out, usage=usage)


def _answer(index: int, c: Choice, prompt: tuple | None, body: CompletionRequest) -> dict:
    """One choice of the answer: (echoed prompt +) text, log-probs, token ids when asked."""
    text, lps, prompt_ids = prompt or ("", [], None)
    as_ids = body.return_tokens_as_token_ids
    legacy = _legacy([*lps, *c.logprobs], 0, as_ids) if body.logprobs is not None else None
    out = _choice(index, text + c.text, legacy, c.finish.reason)
    if body.return_token_ids:
        out |= {"prompt_token_ids": prompt_ids, "token_ids": c.ids}
    return out


def _stream(
    job: TextJob, state: ServerState, rid: str, body: CompletionRequest
) -> StreamingResponse:
    created, model = int(time.time()), body.model or state.cfg.model_name
    head = {"id": rid, "object": "text_completion", "created": created, "model": model}
    done: list[Finish] = []
    offsets = [0] * len(job.choices)

    def chunk(index: int, item: Piece | Finish) -> list[dict]:
        if isinstance(item, Finish):
            done.append(item)
            return [head | {"choices": [_choice(index, "", None, item.reason)]}]
        as_ids = body.return_tokens_as_token_ids
        legacy = (
            _legacy(item.logprobs, offsets[index], as_ids) if body.logprobs is not None else None
        )
        offsets[index] += len(item.text)
        return [head | {"choices": [_choice(index, item.text, legacy, None)]}]

    def end(extra: Any) -> list[dict]:
        if not (body.stream_options and body.stream_options.include_usage):
            return []
        prompt = _prompt_tokens(done, body.n)  # choices finish in order: one at a time
        usage = _usage(prompt, sum(f.completion_tokens for f in done))
        return [head | {"choices": [], "usage": usage}]

    work, q = stream(job, state.pipe.backbone, asyncio.get_running_loop(), rid)
    submit(state, work)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    sent = events(job, work, q, chunk, end, lambda: None)
    return StreamingResponse(sent, media_type="text/event-stream", headers=headers)
