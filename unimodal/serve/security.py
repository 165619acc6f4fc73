"""Who may talk to the server: API key, Host check, cross-site refusal, and the page's headers.

`Shield` is an ASGI middleware in front of every route:
- with an API key (`--api_key` or UNIMODAL_API_KEY), every /v1 request must carry
  `Authorization: Bearer KEY` (compared in constant time), else 401;
- bound to loopback, the Host header must name loopback (127.0.0.1, localhost, [::1]) or one
  of `--allowed_hosts`, else 400: a DNS-rebinding page cannot reach the server by a name it owns;
- a request that changes state (anything but GET / HEAD / OPTIONS) coming from another site (an
  `Origin` other than the server's own, or `Sec-Fetch-Site: cross-site`) is refused with 403
  unless its origin is in `--allowed_origins`: a web page cannot post forms to the server;
- every answer says `X-Content-Type-Options: nosniff`; HTML pages add a Content-Security-Policy
  (same-origin scripts, styles and connections only), `X-Frame-Options: DENY` and no referrer.
CORS headers are sent only for `--allowed_origins` (Starlette's `CORSMiddleware`, in `app`).

Left out on purpose: TLS, users and scopes (one key for everything), rate limits per key.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from unimodal.serve.limits import ServeConfig, short

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def split_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _hostname(host: str) -> str:
    """The name of a Host header value, without its port ("[::1]:8000" -> "::1")."""
    try:
        return (urlsplit("//" + host).hostname or "") if host else ""
    except ValueError:  # e.g. "[::1" (an unclosed bracket)
        return ""


class Shield:
    """ASGI middleware: API key, Host check, cross-site refusal, security headers."""

    def __init__(self, app: Any, cfg: ServeConfig, api_key: str, send_error: Any):
        self.app = app
        self.key = api_key.encode()
        self.origins = set(split_list(cfg.allowed_origins))
        extra = [h.lower() for h in split_list(cfg.allowed_hosts)]
        self.hosts = {*LOOPBACK_HOSTS, *extra} if cfg.host in LOOPBACK_HOSTS else None
        self.send_error = send_error  # (send, status, message, headers, kind) -> awaitable

    def refusal(self, scope: dict) -> tuple[int, str, dict[str, str], str] | None:
        """(status, message, headers, error type) when the request is refused, else None."""
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        host = headers.get("host", b"").decode("latin-1")
        if self.hosts is not None and _hostname(host).lower() not in self.hosts:
            why = f"Host header {short(host)} is not accepted: the server is bound to loopback"
            return 400, why + " (--allowed_hosts adds names)", {}, "invalid_request_error"
        method = scope.get("method", "GET")
        origin = headers.get("origin", b"").decode("latin-1")
        if method not in SAFE_METHODS and origin not in self.origins:
            own = origin.lower() == f"{scope.get('scheme', 'http')}://{host}".lower()
            cross = headers.get("sec-fetch-site", b"") == b"cross-site"
            if (origin and not own) or cross:
                why = f"cross-site request from origin {short(origin or '?')} refused"
                return 403, why + " (--allowed_origins admits an origin)", {}, "permission_error"
        if self.key and scope.get("path", "").startswith("/v1") and method != "OPTIONS":
            auth = headers.get("authorization", b"")
            scheme, _, given = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.key):
                why = "a valid API key is required: send 'Authorization: Bearer KEY'"
                return 401, why, {"WWW-Authenticate": "Bearer"}, "authentication_error"
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refused = self.refusal(scope)
        if refused is not None:
            status, message, headers, kind = refused
            return await self.send_error(send, status, message, headers, kind)

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                kind = dict(headers).get(b"content-type", b"")
                if kind.startswith(b"text/html"):
                    headers += PAGE_HEADERS
                message = message | {"headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
