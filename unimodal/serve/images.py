"""POST /v1/images/generations and /v1/images/edits: OpenAI's image API over the pipeline.

Generation requests that agree on steps, guidance and seed share one batched
`Pipeline.generate` call (see `unimodal.serve.worker`); each request gets its own images back.
Edits take a multipart upload like OpenAI's and make one `Pipeline.edit` call per request. Images come back as base64 PNG (`b64_json`) at the model's trained size.

Left out on purpose: `response_format="url"` (the server stores nothing), masks, and sizes
other than the trained one (no resampling that would pass for the model's work).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile

from unimodal.serve.limits import (
    ApiError,
    check_model,
    check_range,
    check_reserved,
    check_text,
    decode_image,
    encode_png,
    parse_size,
)
from unimodal.serve.schemas import ERRORS, ImageRequest, ImageResponse
from unimodal.serve.state import ServerState, await_job, server_state
from unimodal.serve.worker import Job

router = APIRouter(tags=["images"])


def _common(
    state: ServerState, model: str | None, prompt: str, n: int, size: str | None, fmt: str
) -> int:
    """Checks shared by both routes; returns the image side the model draws."""
    cfg = state.cfg
    check_model(cfg, model)
    if state.image_size is None:
        raise ApiError(
            501, "this model folder has no image generator (chat only)", kind="not_implemented"
        )
    check_text("prompt", prompt, cfg.max_prompt_chars)
    check_reserved("prompt", prompt, state.reserved)
    check_range("n", n, 1, cfg.max_n)
    if fmt == "url":
        raise ApiError(
            400, "response_format 'url' is not supported: use 'b64_json'", "response_format"
        )
    parse_size(state.image_size, size)
    return state.image_size


def _check_sampler(state: ServerState, steps: int | None, seed: int, **guidance: float | None):
    cfg = state.cfg
    check_range("steps", steps, 1, cfg.max_steps)
    check_range("seed", seed, 0, cfg.max_seed)
    for name, value in guidance.items():
        check_range(name, value, 0, cfg.max_guidance)
    return steps or cfg.default_steps or None


def _answer(images: list[str], side: int) -> ImageResponse:
    data = [{"b64_json": b} for b in images]
    return ImageResponse(created=int(time.time()), data=data, size=f"{side}x{side}")


@router.post("/v1/images/generations", response_model=ImageResponse, responses=ERRORS)
async def generations(body: ImageRequest, request: Request) -> ImageResponse:
    """Text to image; equal (steps, guidance, seed) requests are batched together."""
    state = server_state(request)
    side = _common(state, body.model, body.prompt, body.n, body.size, body.response_format)
    steps = _check_sampler(state, body.steps, body.seed, guidance=body.guidance)
    pipe = state.pipe

    def run(jobs: list[tuple[str, int]]) -> list[list[str]]:
        prompts = [p for p, n in jobs for _ in range(n)]
        pics = pipe.generate(prompts, steps=steps, guidance=body.guidance, seed=body.seed)
        out, i = [], 0
        for _, n in jobs:
            out.append([encode_png(im) for im in pics[i : i + n]])
            i += n
        return out

    key = ("generate", steps, body.guidance, body.seed)
    images = await await_job(request, state, Job((body.prompt, body.n), run, key, body.n))
    return _answer(images, side)


@router.post("/v1/images/edits", response_model=ImageResponse, responses=ERRORS)
async def edits(
    request: Request,
    image: Annotated[UploadFile, File(description="the image to edit (PNG, JPEG, WebP, ...)")],
    prompt: Annotated[str, Form(description="the edit instruction")],
    model: Annotated[str | None, Form()] = None,
    n: Annotated[int, Form(ge=1)] = 1,
    size: Annotated[str | None, Form()] = None,
    response_format: Annotated[Literal["b64_json", "url"], Form()] = "b64_json",
    text_guidance: Annotated[float | None, Form(ge=0)] = None,
    image_guidance: Annotated[float | None, Form(ge=0)] = None,
    steps: Annotated[int | None, Form(ge=1)] = None,
    seed: Annotated[int, Form(ge=0)] = 0,
) -> ImageResponse:
    """Edit an uploaded image by an instruction (multipart form, as in OpenAI's API)."""
    state = server_state(request)
    side = _common(state, model, prompt, n, size, response_format)
    if not state.can_edit:
        raise ApiError(
            501, "this model was not trained to edit (gen.edit = false)", kind="not_implemented"
        )
    steps = _check_sampler(
        state, steps, seed, text_guidance=text_guidance, image_guidance=image_guidance
    )
    data = await image.read(state.cfg.max_image_bytes + 1)
    source = await asyncio.to_thread(decode_image, data, state.cfg, "image")
    pipe = state.pipe

    def run(jobs: list[Any]) -> list[list[str]]:
        kw = dict(text_guidance=text_guidance, image_guidance=image_guidance, steps=steps)
        pics = pipe.edit(source, prompt, seed=seed, num_images=n, **kw)
        return [[encode_png(im) for im in pics]]

    return _answer(await await_job(request, state, Job(None, run, None, n)), side)
