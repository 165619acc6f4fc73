"""Bounded image decoding: an allow-list of formats, a pixel cap before decoding, and budgets.

An uploaded image is opened with PNG, JPEG, WebP and GIF (its first frame) only, so no other
PIL plugin ever parses request bytes. Its header is checked (side, megapixels, aspect ratio)
before any pixel is decoded; a JPEG is decoded at the smallest DCT scale (`draft`) that still
has the pixels the model keeps (`keep_pixels`, the processor's `max_pixels`), other formats
are box-reduced to about that size right after decoding. What decoding costs (width x height
x (bands + 3) bytes: the decoded frame and its RGB copy) counts against two budgets: one request's images together (`max_decode_bytes`:
more is a 413 before decoding) and every request's at once (`DecodeBudget`,
`max_decode_bytes_total`: more is a 429). The reduced images a queued request keeps stay
counted until its job is done.

Left out on purpose: progressive decoding of PNG / WebP at a lower resolution (PIL has none).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import threading
import warnings

from PIL import Image, UnidentifiedImageError

from unimodal.serve.limits import ApiError, ServeConfig, busy

ALLOWED = ("PNG", "JPEG", "WEBP", "GIF")
NAMES = "PNG, JPEG, WebP or GIF"


class DecodeBudget:
    """Decoded image bytes held by all requests together (thread-safe)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int, cfg: ServeConfig) -> None:
        with self._lock:
            if self.used + n > self.limit:
                raise busy(
                    f"images being decoded or queued hold {self.used} bytes; "
                    f"{n} more would pass max_decode_bytes_total ({self.limit})",
                    cfg,
                )
            self.used += n

    def give(self, n: int) -> None:
        with self._lock:
            self.used = max(0, self.used - n)


class ImageDecoder:
    """Decodes one request's images within its budget; `release()` when the request is done."""

    def __init__(self, cfg: ServeConfig, budget: DecodeBudget, keep_pixels: int):
        self.cfg, self.budget, self.keep_pixels = cfg, budget, max(1, keep_pixels)
        self.spent = 0  # decoding cost of this request so far (bytes)
        self.held = 0  # bytes this request holds in the shared budget
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            held, self.held = self.held, 0
        self.budget.give(held)

    def data_url(self, url: str, param: str) -> Image.Image:
        """`data:image/...;base64,...` -> image; the server fetches nothing from the network."""
        if not url.startswith("data:"):
            raise ApiError(
                400, f"{param}: only data: URLs are supported (the server fetches nothing)", param
            )
        head, comma, payload = url.partition(",")
        if not comma or not head.endswith(";base64"):
            raise ApiError(400, f"{param}: expected data:image/<type>;base64,<data>", param)
        if len(payload) > self.cfg.max_image_bytes * 4 // 3 + 4:
            raise ApiError(
                413, f"{param}: image larger than {self.cfg.max_image_bytes} bytes", param
            )
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, f"{param}: invalid base64 data", param) from None
        return self.decode(data, param)

    def decode(self, data: bytes, param: str = "image") -> Image.Image:
        """Bytes of an encoded image -> RGB PIL image of about `keep_pixels` pixels at most."""
        cfg = self.cfg
        if not data:
            raise ApiError(400, f"{param}: the file is empty", param)
        if len(data) > cfg.max_image_bytes:
            raise ApiError(
                413, f"{param}: {len(data)} bytes; the limit is {cfg.max_image_bytes}", param
            )
        img = _open(data, param)
        check_image_size(*img.size, cfg, param)
        if img.format in ("JPEG", "MPO"):
            img.draft("RGB", _fit(img.size, self.keep_pixels))
        cost = _cost(img)
        self._reserve(cost, param)
        try:
            out = _load(img, self.keep_pixels, param)
        except BaseException:
            self._give_back(cost)
            raise
        self._give_back(cost - out.size[0] * out.size[1] * 3)  # it keeps the reduced RGB
        return out

    def _reserve(self, cost: int, param: str) -> None:
        with self._lock:
            if self.spent + cost > self.cfg.max_decode_bytes:
                raise ApiError(
                    413,
                    f"{param}: the images of this request would decode to {self.spent + cost} "
                    f"bytes; the limit is {self.cfg.max_decode_bytes} (max_decode_bytes)",
                    param,
                )
            self.budget.take(cost, self.cfg)
            self.spent += cost
            self.held += cost

    def _give_back(self, n: int) -> None:
        with self._lock:
            n = min(n, self.held)
            self.held -= n
        self.budget.give(n)


def _open(data: bytes, param: str) -> Image.Image:
    """Open (header only) with the allowed formats' plugins alone."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=ALLOWED)
    except UnidentifiedImageError:
        raise ApiError(400, f"{param}: not a decodable {NAMES} image", param) from None
    except Exception as e:  # PIL raises many kinds (a bomb warning is an Exception too)
        msg = f"{param}: not a decodable image ({type(e).__name__})"
        raise ApiError(400, msg, param) from None


def _load(img: Image.Image, keep_pixels: int, param: str) -> Image.Image:
    """Decode the first frame, box-reduce it to about `keep_pixels`, convert to RGB."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.seek(0)
            img.load()
            if img.mode not in ("RGB", "L"):
                img = img.convert("RGB")
            factor = math.isqrt(img.size[0] * img.size[1] // keep_pixels)
            if factor >= 2:
                img = img.reduce(factor)
            return img.convert("RGB")
    except Exception as e:
        msg = f"{param}: not a decodable image ({type(e).__name__})"
        raise ApiError(400, msg, param) from None


def _cost(img: Image.Image) -> int:
    """Bytes that decoding `img` may hold: its frame at full depth plus an RGB copy."""
    depth = 4 if img.mode in ("I", "F") else 2 if img.mode.startswith("I;16") else 1
    return img.size[0] * img.size[1] * (len(img.getbands()) * depth + 3)


def _fit(size: tuple[int, int], keep_pixels: int) -> tuple[int, int]:
    """The smallest size of `size`'s shape with at least `keep_pixels` pixels (or `size`)."""
    w, h = size
    scale = min(1.0, math.sqrt(keep_pixels / (w * h)))
    return max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))


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
