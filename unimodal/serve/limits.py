"""What the server accepts: `ServeConfig` (every limit, set from the command line) and the checks.

Each check raises `ApiError` with an HTTP status and a message that names the field, the value
and the limit, so bad input always ends as a clear 4xx answer and never reaches the model.
Uploaded images are checked from their header (size, megapixels, aspect ratio) before any pixel
is decoded, which also stops decompression bombs.

Left out on purpose: authentication and rate limiting per client (put a proxy in front).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image


@dataclass
class ServeConfig:
    """Server settings and limits; `tools/serve.py --field=value` overrides any of them."""

    model: str = ""  # model folder (Pipeline.from_pretrained)
    model_name: str = "unimodal"  # the id clients pass as `model`
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = ""  # "" picks cuda when available
    max_body_bytes: int = 16 << 20  # whole request body (JSON or multipart)
    max_image_bytes: int = 8 << 20  # one encoded image (upload or data URL)
    max_image_side: int = 4096  # pixels, either side
    max_megapixels: float = 16.0
    max_aspect_ratio: float = 20.0  # longer side / shorter side
    max_images_per_chat: int = 8
    max_messages: int = 64
    max_chat_chars: int = 32000  # all text parts of a conversation together
    max_prompt_chars: int = 2000  # image prompts and edit instructions
    max_tokens: int = 1024  # upper bound for a request's max_tokens
    default_max_tokens: int = 256
    max_temperature: float = 2.0
    max_n: int = 4  # images per request
    max_steps: int = 100
    default_steps: int = 0  # 0: the model's own sampler default
    max_guidance: float = 20.0
    max_seed: int = 2**32 - 1
    max_batch: int = 8  # images in one batched pipeline call
    batch_window_ms: int = 10  # how long the worker waits to fill a batch
    max_queue: int = 64  # queued jobs; more gives 429
    disconnect_poll_s: float = 0.1  # how often a waiting request checks for its client

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_image_bytes", "max_image_side", "max_n", "max_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.default_max_tokens <= self.max_tokens:
            raise ValueError("default_max_tokens must lie in [1, max_tokens]")
        if not 0 <= self.default_steps <= self.max_steps:
            raise ValueError("default_steps must lie in [0, max_steps]")


class ApiError(Exception):
    """An error answer: HTTP status, a message for people, an OpenAI-style type and param."""

    def __init__(
        self, status: int, message: str, param: str | None = None, kind: str | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")


def error_body(status: int, message: str, param: str | None = None, kind: str | None = None):
    """The JSON body of every error answer (OpenAI's shape)."""
    kind = kind or ("invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def check_range(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        raise ApiError(400, f"{name} must lie in [{low:g}, {high:g}], got {value:g}", name)


def check_text(name: str, text: str, limit: int) -> str:
    """Non-empty (after stripping) and at most `limit` characters."""
    if not text.strip():
        raise ApiError(400, f"{name} is empty", name)
    if len(text) > limit:
        raise ApiError(400, f"{name} has {len(text)} characters; the limit is {limit}", name)
    return text


def check_reserved(name: str, text: str, reserved: re.Pattern | None) -> None:
    """Refuse the tokenizer's control tokens (`<|im_start|>`, `<|image_pad|>`, ...) in user text:
    they would forge turns or image slots that the prompt does not have."""
    if reserved is not None and (m := reserved.search(text)):
        raise ApiError(400, f"{name} contains the reserved token {m[0]!r}", name)


def reserved_pattern(tokenizer: Any) -> re.Pattern | None:
    """One regex for every added (special) token of `tokenizer`, None when it has none."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    tokens = sorted({t.content for t in added.values() if t.content.strip()}, key=len)
    return re.compile("|".join(re.escape(t) for t in reversed(tokens))) if tokens else None


def check_model(cfg: ServeConfig, model: str | None) -> None:
    if model is not None and model != cfg.model_name:
        raise ApiError(
            404,
            f"unknown model '{model}'; this server serves '{cfg.model_name}' (see GET /v1/models)",
            "model",
            "model_not_found",
        )


def parse_size(cfg_size: int, size: str | None) -> None:
    """OpenAI's "WxH"; the model draws at its trained resolution only, so that one (or "auto")."""
    if size is None or size == "auto":
        return
    m = re.fullmatch(r"\s*(\d{1,6})\s*[xX]\s*(\d{1,6})\s*", size)
    if m is None:
        raise ApiError(400, f"size must look like '{cfg_size}x{cfg_size}', got '{size}'", "size")
    w, h = int(m[1]), int(m[2])
    if (w, h) != (cfg_size, cfg_size):
        raise ApiError(
            400, f"size {w}x{h} is not supported: this model draws {cfg_size}x{cfg_size}", "size"
        )


def decode_image(data: bytes, cfg: ServeConfig, param: str = "image") -> Image.Image:
    """Bytes of an encoded image -> RGB PIL image, within the configured limits."""
    if not data:
        raise ApiError(400, f"{param}: the file is empty", param)
    if len(data) > cfg.max_image_bytes:
        raise ApiError(
            413, f"{param}: {len(data)} bytes; the limit is {cfg.max_image_bytes}", param
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            check_image_size(w, h, cfg, param)
            img.load()
            return img.convert("RGB")
    except ApiError:
        raise
    except Exception as e:  # PIL raises many kinds (a bomb warning is an Exception too)
        raise ApiError(400, f"{param}: not a decodable image ({type(e).__name__})", param) from None


def check_image_size(w: int, h: int, cfg: ServeConfig, param: str) -> None:
    if w < 1 or h < 1:
        raise ApiError(400, f"{param}: image has no pixels ({w}x{h})", param)
    if max(w, h) > cfg.max_image_side:
        raise ApiError(
            400, f"{param}: {w}x{h} px; the limit is {cfg.max_image_side} px a side", param
        )
    if w * h > cfg.max_megapixels * 1e6:
        raise ApiError(
            400,
            f"{param}: {w * h / 1e6:.1f} megapixels; the limit is {cfg.max_megapixels:g}",
            param,
        )
    if max(w, h) / min(w, h) > cfg.max_aspect_ratio:
        raise ApiError(
            400, f"{param}: aspect ratio {w}x{h} exceeds {cfg.max_aspect_ratio:g}:1", param
        )


def decode_data_url(url: str, cfg: ServeConfig, param: str) -> Image.Image:
    """`data:image/...;base64,...` -> image; the server fetches nothing from the network."""
    if not url.startswith("data:"):
        raise ApiError(
            400, f"{param}: only data: URLs are supported (the server fetches nothing)", param
        )
    head, comma, payload = url.partition(",")
    if not comma or not head.endswith(";base64"):
        raise ApiError(400, f"{param}: expected data:image/<type>;base64,<data>", param)
    if len(payload) > cfg.max_image_bytes * 4 // 3 + 4:
        raise ApiError(413, f"{param}: image larger than {cfg.max_image_bytes} bytes", param)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{param}: invalid base64 data", param) from None
    return decode_image(data, cfg, param)


def encode_png(img: Image.Image) -> str:
    """PIL image -> base64 PNG text (the `b64_json` field)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")
