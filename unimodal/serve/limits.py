"""What the server accepts: `ServeConfig` (every limit, set from the command line) and the checks.

Each check raises `ApiError` with an HTTP status and a message that names the field and the
limit, so bad input always ends as a clear 4xx answer and never reaches the model. Messages
quote at most a short prefix of a bad value (`short`), and `error_body` makes every message
encodable (a lone surrogate becomes `\\ud800`) and bounded in length.

Left out on purpose: rate limiting per client (put a proxy in front).
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
import io
import re
from dataclasses import dataclass

from PIL import Image

QUOTE_CHARS = 40  # how much of a bad value an error message quotes
MESSAGE_CHARS = 1000  # longest error message


@dataclass
class ServeConfig:
    """Server settings and limits; `tools/serve.py --field=value` overrides any of them."""

    model: str = ""  # model folder (Pipeline.from_pretrained)
    model_name: str = "unimodal"  # the id clients pass as `model`
    host: str = "127.0.0.1"  # on loopback only Host headers naming loopback are accepted
    port: int = 8000
    device: str = ""  # "" picks cuda when available
    api_key: str = ""  # required as `Authorization: Bearer KEY` on /v1 (env UNIMODAL_API_KEY)
    allowed_origins: str = ""  # comma-separated origins given CORS and cross-site POSTs
    allowed_hosts: str = ""  # comma-separated extra Host names accepted on loopback
    max_body_bytes: int = 16 << 20  # whole request body (JSON or multipart)
    max_image_bytes: int = 8 << 20  # one encoded image (upload or data URL)
    max_image_side: int = 4096  # pixels, either side
    max_megapixels: float = 16.0  # of one image, from its header (before decoding)
    max_aspect_ratio: float = 20.0  # longer side / shorter side
    max_decode_bytes: int = 100 << 20  # decoding one request's images (one 16 MP RGB image fits)
    max_decode_bytes_total: int = 256 << 20  # decoded pixels held by all requests at once
    max_images_per_chat: int = 8
    max_messages: int = 64
    max_chat_chars: int = 32000  # all text of a conversation (or a completion prompt)
    max_prompt_chars: int = 2000  # image prompts and edit instructions
    max_tokens: int = 1024  # upper bound for a request's max_tokens
    default_max_tokens: int = 256  # chat; /v1/completions defaults to 16 as OpenAI's does
    max_temperature: float = 2.0
    max_n: int = 4  # images or choices per request
    max_completion_choices: int = 64  # prompts x n of one /v1/completions request
    max_steps: int = 100
    default_steps: int = 0  # 0: the model's own sampler default
    max_guidance: float = 20.0
    max_seed: int = 2**32 - 1
    max_batch: int = 8  # images in one batched pipeline call
    batch_window_ms: int = 10  # how long the worker waits to fill a batch
    max_queue: int = 64  # queued jobs; more gives 429
    retry_after_s: int = 1  # the Retry-After of a 429
    disconnect_poll_s: float = 0.1  # how often a waiting request checks for its client
    lora_dir: str = ""  # enables POST /v1/load_lora_adapter for adapter folders under DIR
    max_loras: int = 4  # hot-loaded adapters held at once
    logprobs_mode: str = "raw_logprobs"  # or processed_logprobs: after the temperature (RL)

    def __post_init__(self) -> None:
        positive = ("max_body_bytes", "max_image_bytes", "max_image_side", "max_n", "max_batch")
        for name in (*positive, "max_decode_bytes", "max_decode_bytes_total"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.default_max_tokens <= self.max_tokens:
            raise ValueError("default_max_tokens must lie in [1, max_tokens]")
        if not 0 <= self.default_steps <= self.max_steps:
            raise ValueError("default_steps must lie in [0, max_steps]")
        if self.logprobs_mode not in ("raw_logprobs", "processed_logprobs"):
            raise ValueError(
                f"logprobs_mode: raw_logprobs or processed_logprobs, got {self.logprobs_mode!r}"
            )
        if ":" in self.model_name:
            raise ValueError(f"model_name {self.model_name!r}: ':' separates the model from a head")


def options_help(cls: type) -> str:
    """One line per field of the dataclass `cls`: `--name=default`, and its source comment."""
    comments = dict(re.findall(r"^\s+(\w+): [^#\n]*#\s*(.*)$", inspect.getsource(cls), re.M))
    lines = []
    for f in dataclasses.fields(cls):
        flag = f"--{f.name}={f.default!r}" if f.default != "" else f"--{f.name}=..."
        lines.append(f"  {flag:<34} {comments.get(f.name, '')}".rstrip())
    return "\n".join(lines)


class ApiError(Exception):
    """An error answer: HTTP status, a message for people, an OpenAI-style type and param."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")
        self.headers = headers


def safe_text(text: str, limit: int = MESSAGE_CHARS) -> str:
    """`text` cut to `limit` characters, lone surrogates written as escapes (always UTF-8)."""
    cut = text if len(text) <= limit else text[: limit - 1] + "…"
    return cut.encode("utf-8", "backslashreplace").decode("utf-8")


def short(value: object, limit: int = QUOTE_CHARS) -> str:
    """A bad value for an error message: quoted, at most `limit` characters of it."""
    text = value if isinstance(value, str) else repr(value)
    more = f"… ({len(text)} characters)" if len(text) > limit else ""
    return "'" + safe_text(text[:limit], limit) + "'" + more


def error_body(status: int, message: str, param: str | None = None, kind: str | None = None):
    """The JSON body of every error answer (OpenAI's shape), always encodable and bounded."""
    kind = kind or ("invalid_request_error" if status < 500 else "server_error")
    param = None if param is None else safe_text(param, 100)
    return {"error": {"message": safe_text(message), "type": kind, "param": param, "code": status}}


def busy(message: str, cfg: ServeConfig) -> ApiError:
    """A 429 that tells the client when to try again."""
    headers = {"Retry-After": str(cfg.retry_after_s)}
    return ApiError(429, f"server busy: {message}; retry later", None, "rate_limit_error", headers)


def _number(v: float) -> str:
    """A number for a message: floats as %g, integers in full up to 20 digits."""
    if isinstance(v, float):
        return f"{v:g}"
    text = str(v)
    return text if len(text) <= 20 else f"{text[:12]}… ({len(text)} digits)"


def check_range(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        lo, hi, got = _number(low), _number(high), _number(value)
        raise ApiError(400, f"{name} must lie in [{lo}, {hi}], got {got}", name)


def check_text(name: str, text: str, limit: int) -> str:
    """Non-empty (after stripping) and at most `limit` characters."""
    if not text.strip():
        raise ApiError(400, f"{name} is empty", name)
    if len(text) > limit:
        raise ApiError(400, f"{name} has {len(text)} characters; the limit is {limit}", name)
    return text


def check_unicode(name: str, text: str) -> str:
    """Refuse text that is not valid Unicode (a lone surrogate such as JSON's "\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        at = f"at character {e.start}"
        raise ApiError(400, f"{name} is not valid Unicode (a lone surrogate {at})", name) from None
    return text


def check_reserved(name: str, text: str, reserved: re.Pattern | None) -> None:
    """Refuse the tokenizer's control tokens (`<|im_start|>`, `<|image_pad|>`, ...) in user text:
    they would forge turns or image slots that the prompt does not have."""
    if reserved is not None and (m := reserved.search(text)):
        raise ApiError(400, f"{name} contains the reserved token {m[0]!r}", name)


def reserved_pattern(tokens: list[str]) -> re.Pattern | None:
    """One regex for `tokens` (longest first), None when there are none."""
    tokens = sorted({t for t in tokens if t.strip()}, key=len, reverse=True)
    return re.compile("|".join(re.escape(t) for t in tokens)) if tokens else None


def added_tokens(tokenizer: object) -> list[str]:
    """Every added (special) token of a Hugging Face tokenizer."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return [t.content for t in added.values()]


def check_model(cfg: ServeConfig, model: str | None) -> None:
    if model is not None and model != cfg.model_name:
        raise ApiError(
            404,
            f"unknown model {short(model)}; this server serves '{cfg.model_name}' "
            "(see GET /v1/models)",
            "model",
            "model_not_found",
        )


def parse_size(cfg_size: int, size: str | None) -> None:
    """OpenAI's "WxH"; the model draws at its trained resolution only, so that one (or "auto")."""
    if size is None or size == "auto":
        return
    m = re.fullmatch(r"\s*(\d{1,6})\s*[xX]\s*(\d{1,6})\s*", size)
    if m is None:
        raise ApiError(
            400, f"size must look like '{cfg_size}x{cfg_size}', got {short(size)}", "size"
        )
    w, h = int(m[1]), int(m[2])
    if (w, h) != (cfg_size, cfg_size):
        raise ApiError(
            400, f"size {w}x{h} is not supported: this model draws {cfg_size}x{cfg_size}", "size"
        )


FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}  # output_format -> PIL format


def encode_image(img: Image.Image, fmt: str = "png", compression: int | None = None) -> str:
    """PIL image -> base64 text (the `b64_json` field) in `fmt`; `compression` 0-100 (JPEG /
    WebP: 100 - quality) as OpenAI's `output_compression`."""
    buf = io.BytesIO()
    kw = {} if fmt == "png" or compression is None else {"quality": 100 - compression}
    img.save(buf, format=FORMATS[fmt], **kw)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def encode_png(img: Image.Image) -> str:
    """PIL image -> base64 PNG text."""
    return encode_image(img, "png")
