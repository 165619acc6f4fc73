"""Request and response bodies, in OpenAI's shapes (pydantic models, so /openapi.json has them).

The schemas hold the structure (types, required fields, enums); the configured limits (steps,
n, sizes, lengths) are checked in `unimodal.serve.limits` and answered with a 400 that names
the limit. Unknown fields that OpenAI clients send (user, top_p, ...) are ignored.

Extensions to OpenAI's API: images may appear in any role's content (the web page sends the
images the server drew back as assistant turns), and image requests take steps / guidance /
seed (and text_guidance / image_guidance for edits).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ImageURL(_Lenient):
    url: str = Field(description="a data:image/...;base64,... URL (nothing is fetched)")
    detail: str | None = None


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ImagePart(_Lenient):
    type: Literal["image_url"]
    image_url: ImageURL


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(_Lenient):
    role: Literal["system", "user", "assistant"]
    content: str | list[Part]


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatRequest(_Lenient):
    model: str | None = Field(None, description="the served model id (GET /v1/models)")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    n: int = Field(1, ge=1, le=1, description="only 1 is supported")

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"messages": [{"role": "user", "content": "Describe a red circle."}]},
                {"messages": [{"role": "user", "content": "Hi"}], "stream": True, "max_tokens": 4},
            ]
        },
    )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ImageRequest(_Lenient):
    prompt: str = Field(min_length=1)
    model: str | None = None
    n: int = Field(1, ge=1)
    size: str | None = Field(None, description='"WxH"; the model draws its trained size only')
    response_format: Literal["b64_json", "url"] = "b64_json"
    steps: int | None = Field(None, ge=1, description="sampler steps (our extension)")
    guidance: float | None = Field(None, ge=0, description="classifier-free guidance scale")
    seed: int = Field(0, ge=0)

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [{"prompt": "a red circle"}, {"prompt": "two triangles", "n": 2, "seed": 1}]
        },
    )


class ImageData(BaseModel):
    b64_json: str
    revised_prompt: str | None = None


class ImageResponse(BaseModel):
    created: int
    data: list[ImageData]
    size: str


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "unimodal"
    capabilities: list[str]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    model: str
    capabilities: list[str]
    queued: int
    stats: dict[str, int]
    limits: dict[str, float | int | str]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (400, 404, 413, 422, 429, 501)
}
