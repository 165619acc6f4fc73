"""Request and response bodies, in OpenAI's shapes (pydantic models, so /openapi.json has them).

The schemas hold the structure (types, required fields, enums); the configured limits (steps,
n, sizes, lengths) are checked in `unimodal.serve.limits` and answered with a 400 that names
the limit. Requests are strict: a parameter the server does not know is a 400 that names it;
parameters that would change nothing here are accepted at their neutral value only (tools,
penalties, logit_bias, response_format "text"); `user`, `metadata`, `store`, `service_tier`
and `parallel_tool_calls` are accepted and ignored. A lone surrogate anywhere in a request
("\\ud800" in JSON) is a 400 that names the field.

Extensions to OpenAI's API: images may appear in any role's content (the web page sends the
images the server drew back as assistant turns), and image requests take steps / guidance /
seed (and text_guidance / image_guidance for edits). Completions (`/v1/completions`) are in
`unimodal.serve.completions`, image bodies in `unimodal.serve.images`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


def find_surrogate(value: Any, path: str = "") -> str | None:
    """The path of the first string (or key) in `value` that is not valid Unicode, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            return f"{path or 'body'} (at character {e.start})"
        return None
    if not isinstance(value, dict | list):
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        name = str(key)[:40].encode("utf-8", "backslashreplace").decode()  # quotable
        where = f"{path}.{name}" if path else name
        if (bad := find_surrogate(key, where + " (a key)")) or (bad := find_surrogate(item, where)):
            return bad
    return None


def _neutral(why: str, neutral: tuple = (None, 0, 0.0, [], {}, "none", "auto")):
    def check(value: Any) -> Any:
        if value not in neutral:
            raise ValueError(why)
        return value

    return AfterValidator(check)


class Strict(BaseModel):
    """Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class Checked(Strict):
    """A whole request body: invalid Unicode anywhere in it (keys too) is refused."""

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        if (bad := find_surrogate(data)) is not None:
            raise ValueError(f"{bad} is not valid Unicode (a lone surrogate)")
        return data


class ImageURL(Strict):
    url: str = Field(description="a data:image/...;base64,... URL (nothing is fetched)")
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ImagePart(Strict):
    type: Literal["image_url"]
    image_url: ImageURL


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="`developer` is OpenAI's newer name for `system` and is sent as system"
    )
    content: str | list[Part]
    name: str | None = Field(None, description="accepted, not used")


class StreamOptions(Strict):
    include_usage: bool = False


class ResponseFormat(Strict):
    type: Literal["text"] = Field(description="only plain text: no JSON mode or schemas")


Stop = str | Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=4)] | None
NO_TOOLS = "function calling is not supported by this model"


class Sampled(Checked):
    """Sampling parameters shared by chat and completions (OpenAI's defaults)."""

    model: str | None = Field(None, description="the served model id (GET /v1/models)")
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=0)
    temperature: float | None = Field(None, ge=0, description="default 1")
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling; default 1")
    n: int = Field(1, ge=1, description="choices; choice i is sampled with seed + i")
    stop: Stop = Field(None, description="up to 4 sequences that end a choice (not included)")
    seed: int | None = Field(None, ge=0, description="same seed, same request: same answer")
    frequency_penalty: Annotated[float | None, _neutral("penalties are not supported")] = None
    presence_penalty: Annotated[float | None, _neutral("penalties are not supported")] = None
    logit_bias: Annotated[dict[str, float] | None, _neutral("logit_bias is not supported")] = None
    user: str | None = Field(None, description="accepted, not used")


class ChatRequest(Sampled):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(None, ge=0, le=20, description="needs logprobs: true")
    response_format: ResponseFormat | None = None
    tools: Annotated[list[dict[str, Any]] | None, _neutral(NO_TOOLS)] = None
    tool_choice: Annotated[str | dict[str, Any] | None, _neutral(NO_TOOLS)] = None
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"messages": [{"role": "user", "content": "Describe a red circle."}]},
                {"messages": [{"role": "user", "content": "Hi"}], "stream": True, "max_tokens": 4},
            ]
        },
    )


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: ChoiceLogprobs | None = None


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
    system_fingerprint: str | None = None


class ImageRequest(Checked):
    prompt: str = Field(min_length=1)
    model: str | None = None
    n: int = Field(1, ge=1, description="image i is drawn with seed + i")
    size: str | None = Field(None, description='"WxH"; the model draws its trained size only')
    response_format: Literal["b64_json", "url"] = "b64_json"
    output_format: Literal["png", "jpeg", "webp"] = "png"
    output_compression: int | None = Field(None, ge=0, le=100, description="jpeg / webp")
    quality: Literal["auto", "standard"] | None = Field(
        None, description="one quality only (steps trade quality for time)"
    )
    background: Literal["auto", "opaque"] | None = None
    user: str | None = Field(None, description="accepted, not used")
    steps: int | None = Field(None, ge=1, description="sampler steps (our extension)")
    guidance: float | None = Field(None, ge=0, description="classifier-free guidance scale")
    seed: int = Field(0, ge=0, description="the same seed gives the same image, batched or not")

    model_config = ConfigDict(
        extra="forbid",
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
    output_format: Literal["png", "jpeg", "webp"] = "png"


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "unimodal"
    capabilities: list[str]
    parent: str | None = Field(None, description="the base model of a LoRA head")
    root: str | None = Field(None, description="a hot-loaded adapter's folder")


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
    api_key_required: bool = False


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (400, 401, 403, 404, 413, 429)
}
