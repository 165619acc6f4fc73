"""POST /v1/images/generations and /v1/images/edits: OpenAI's image API over the pipeline.

Seeds: image i of a request with seed s is drawn from its own noise, seeded s + i, so it is
the image a request with seed s + i and n = 1 gets, alone or batched with any others.
Generation requests that agree on steps and guidance share one batched `Pipeline.generate`
call (see `unimodal.serve.worker`); each request gets its own images back. Edits take a
multipart upload like OpenAI's (`image`, or a one-file `image[]`) and make one `Pipeline.edit`
call per request. Images come back base64-encoded (`b64_json`) as PNG, JPEG or WebP
(`output_format`, `output_compression`) at the model's trained size.

Left out on purpose: `response_format="url"` (the server stores nothing), masks (a 400: the
instruction alone says what to change), qualities and sizes other than the trained one.
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
    check_unicode,
    encode_image,
    parse_size,
    short,
)
from unimodal.serve.schemas import ERRORS, ImageRequest, ImageResponse
from unimodal.serve.state import ServerState, await_job, server_state
from unimodal.serve.worker import Job

router = APIRouter(tags=["images"])
EDIT_FIELDS = {"image", "image[]", "prompt", "model", "n", "size", "response_format", "user"}
EDIT_FIELDS |= {"output_format", "output_compression", "quality", "background", "mask"}
EDIT_FIELDS |= {"text_guidance", "image_guidance", "steps", "seed"}


def _common(
    state: ServerState, model: str | None, prompt: str, n: int, size: str | None, fmt: str
) -> int:
    """Checks shared by both routes; returns the image side the model draws."""
    cfg = state.cfg
    check_model(cfg, model)
    if state.image_size is None:
        raise ApiError(400, "this model folder has no image generator (chat only)", "model")
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


def _answer(images: list[str], side: int, fmt: str) -> ImageResponse:
    data = [{"b64_json": b} for b in images]
    return ImageResponse(
        created=int(time.time()), data=data, size=f"{side}x{side}", output_format=fmt
    )


@router.post("/v1/images/generations", response_model=ImageResponse, responses=ERRORS)
async def generations(body: ImageRequest, request: Request) -> ImageResponse:
    """Text to image; requests with equal steps and guidance are batched together."""
    state = server_state(request)
    side = _common(state, body.model, body.prompt, body.n, body.size, body.response_format)
    steps = _check_sampler(state, body.steps, body.seed, guidance=body.guidance)
    pipe = state.pipe

    def run(jobs: list[ImageRequest]) -> list[list[str]]:
        prompts = [j.prompt for j in jobs for _ in range(j.n)]
        seeds = [j.seed + i for j in jobs for i in range(j.n)]
        pics = pipe.generate(prompts, steps=steps, guidance=body.guidance, seeds=seeds)
        out, i = [], 0
        for j in jobs:
            out.append([encode_image(im, j.output_format, j.output_compression) for im in pics[i : i + j.n]])  # fmt: skip
            i += j.n
        return out

    key = ("generate", steps, body.guidance)
    images = await await_job(request, state, Job(body, run, key, body.n))
    return _answer(images, side, body.output_format)


async def _edit_form(request: Request, image: UploadFile | None, mask: Any) -> UploadFile:
    """The one source image of an edit; unknown fields and masks are refused by name."""
    form = await request.form()
    for name in form:
        check_unicode("a form field name", name)
        if name not in EDIT_FIELDS:
            raise ApiError(400, f"{short(name)} is not a supported parameter", name)
    if mask is not None:
        raise ApiError(
            400, "mask: masks are not supported; the instruction says what to change", "mask"
        )
    files = [f for f in form.getlist("image[]") if not isinstance(f, str)]
    if image is None and len(files) == 1:
        image = files[0]
    if image is None or files and image is not files[0]:
        raise ApiError(400, "image: send exactly one image file", "image")
    return image


@router.post("/v1/images/edits", response_model=ImageResponse, responses=ERRORS)
async def edits(
    request: Request,
    prompt: Annotated[str, Form(description="the edit instruction")],
    image: Annotated[
        UploadFile | None, File(description="the image (PNG, JPEG, WebP, GIF)")
    ] = None,
    mask: Annotated[UploadFile | None, File(description="not supported (a 400)")] = None,
    model: Annotated[str | None, Form()] = None,
    n: Annotated[int, Form(ge=1, description="image i is drawn with seed + i")] = 1,
    size: Annotated[str | None, Form()] = None,
    response_format: Annotated[Literal["b64_json", "url"], Form()] = "b64_json",
    output_format: Annotated[Literal["png", "jpeg", "webp"], Form()] = "png",
    output_compression: Annotated[int | None, Form(ge=0, le=100)] = None,
    quality: Annotated[Literal["auto", "standard"] | None, Form()] = None,
    background: Annotated[Literal["auto", "opaque"] | None, Form()] = None,
    text_guidance: Annotated[float | None, Form(ge=0)] = None,
    image_guidance: Annotated[float | None, Form(ge=0)] = None,
    steps: Annotated[int | None, Form(ge=1)] = None,
    seed: Annotated[int, Form(ge=0)] = 0,
) -> ImageResponse:
    """Edit an uploaded image by an instruction (multipart form, as in OpenAI's API)."""
    state = server_state(request)
    image = await _edit_form(request, image, mask)
    side = _common(state, model, prompt, n, size, response_format)
    if not state.can_edit:
        raise ApiError(400, "this model was not trained to edit (gen.edit = false)", "model")
    steps = _check_sampler(
        state, steps, seed, text_guidance=text_guidance, image_guidance=image_guidance
    )
    data = await image.read(state.cfg.max_image_bytes + 1)
    decoder = state.decoder()
    try:
        source = await asyncio.to_thread(decoder.decode, data, "image")
        del data
        pipe = state.pipe

        def run(jobs: list[Any]) -> list[list[str]]:
            kw = dict(text_guidance=text_guidance, image_guidance=image_guidance, steps=steps)
            pics = pipe.edit(source, prompt, seed=seed, num_images=n, **kw)
            return [[encode_image(im, output_format, output_compression) for im in pics]]

        images = await await_job(request, state, Job(None, run, None, n))
    finally:
        decoder.release()
    return _answer(images, side, output_format)
