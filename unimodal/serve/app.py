"""The FastAPI application: OpenAI-compatible routes, the web page, and error handling.

`create_app(pipe, cfg)` wires the routes of `unimodal.serve.chat`, `.completions`, `.images`
and `.adapters` (LoRA hot-loading) to one `Worker` that owns the pipeline; `/v1/models` lists
the base model and every LoRA head as its own model id (`unimodal.serve.state`). Every error
answer is JSON in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`) and a 4xx
for anything a client sent:
400 for malformed JSON, schema violations, unsupported parameters and capabilities the model
lacks, 401 / 403 from `unimodal.serve.security`, 404 for unknown models and routes, 413 for
sizes, 429 (with Retry-After) when busy. `Guard`, the outermost ASGI middleware, gives every
request an id (`X-Request-Id`), caps the request body, and turns an unexpected exception into
a 500 that says "internal error" and the id, with the traceback in the log under that id.

The interactive docs (/docs, /redoc) are off: FastAPI's load their JavaScript from a CDN,
which would leave them blank offline; /docs says so and points to /openapi.json.
Left out on purpose: `response_format="url"` (nothing is stored).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from unimodal.serve import adapters, chat, completions, images
from unimodal.serve.limits import ApiError, ServeConfig, error_body, safe_text, short
from unimodal.serve.schemas import ERRORS, Health, ModelCard, ModelList
from unimodal.serve.security import Shield, split_list
from unimodal.serve.state import ClientGone, ServerState
from unimodal.serve.worker import Worker

log = logging.getLogger("unimodal.serve")
STATIC = resources.files("unimodal") / "serve" / "static"
TEXT_CAPS = ("chat.completions", "completions")  # what a LoRA head serves
DOCS_NOTE = """<!doctype html><meta charset="utf-8"><title>unimodal API</title>
<p>The interactive API docs are off: they would load their JavaScript from a CDN.
The API is described by its OpenAPI schema at <a href="/openapi.json">/openapi.json</a>
(OpenAI's chat, completions, images and models routes); the web page is at <a href="/">/</a>.
"""


async def send_json(
    send: Any, status: int, body: dict, headers: dict[str, str] | None = None
) -> None:
    data = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    head += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": data})


async def send_error(send: Any, status: int, message: str, headers=None, kind=None) -> None:
    await send_json(send, status, error_body(status, message, None, kind), headers)


class Guard:
    """ASGI middleware: a request id, a body cap, and a JSON 500 for unexpected errors."""

    def __init__(self, app: Any, max_body_bytes: int):
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = uuid.uuid4().hex
        scope["request_id"] = rid
        started, seen = False, 0
        too_large = f"request body larger than {self.limit} bytes (max_body_bytes)"

        async def counted_receive() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, too_large)
            return message

        async def tracked_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                message = message | {"headers": headers}
            await send(message)

        length = dict(scope.get("headers", [])).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.limit:
            return await send_json(tracked_send, 413, error_body(413, too_large))
        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception:
            method, path = scope.get("method"), short(scope.get("path", ""), 200)
            log.exception("request %s: unexpected error in %s %s", rid, method, path)
            if not started:
                msg = f"internal error (request id {rid}); the server log has the details"
                await send_json(tracked_send, 500, error_body(500, msg))


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """(message, param) for pydantic's errors; the message quotes no input values."""
    errors = exc.errors()
    for err in errors:
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            return f"malformed JSON body: {detail}".rstrip(": "), None
    parts, param = [], None
    for err in errors[:5]:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
        where = ".".join(safe_text(x, 30) for x in loc)
        param = param or where or None
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "not a supported parameter"
        whole = not where and err.get("type") == "value_error"  # the message names the field
        parts.append(msg if whole else f"{where or 'body'}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more, param


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        body = error_body(exc.status, exc.message, exc.param, exc.kind)
        return JSONResponse(body, exc.status, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        msg, param = _validation_message(exc)
        return JSONResponse(error_body(400, msg, param), 400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        msg = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 400 and msg == "There was an error parsing the body":
            msg = "malformed body: not JSON in UTF-8 (or nested too deeply)"
        if exc.status_code == 404 and msg == "Not Found":
            path = short(request.url.path, 100)
            msg = f"no route {request.method} {path} (the API is described at /openapi.json)"
        return JSONResponse(error_body(exc.status_code, msg), exc.status_code, exc.headers)

    @app.exception_handler(ClientGone)
    async def gone(request: Request, exc: ClientGone) -> JSONResponse:
        return JSONResponse(error_body(499, "client closed the request"), 499)


def _server_routes(app: FastAPI, state: ServerState, api_key: str) -> None:
    cfg = state.cfg

    @app.get("/health", response_model=Health, tags=["server"])
    async def health() -> JSONResponse:
        worker = state.worker
        ok = worker.alive
        body = Health(
            status="ok" if ok else "degraded",
            model=cfg.model_name,
            capabilities=state.capabilities(),
            queued=worker.pending(),
            stats=vars(worker.stats),
            limits={k: v for k, v in vars(cfg).items() if k.startswith(("max_", "default_"))}
            | {"image_size": state.image_size or 0},
            api_key_required=bool(api_key),
        )
        return JSONResponse(body.model_dump(), 200 if ok else 503)

    def cards() -> list[ModelCard]:
        created, base = int(state.started), cfg.model_name
        out = [ModelCard(id=base, created=created, capabilities=state.capabilities())]
        for served, _, root in state.models()[1:]:
            out.append(ModelCard(id=served, created=created, capabilities=list(TEXT_CAPS),
                                 parent=base, root=root))  # fmt: skip
        return out

    @app.get("/v1/models", response_model=ModelList, tags=["server"])
    async def models() -> ModelList:
        return ModelList(data=cards())

    @app.get("/v1/models/{model}", response_model=ModelCard, responses=ERRORS, tags=["server"])
    async def model(model: str) -> ModelCard:
        head = state.head_of(model)  # a 404 for unknown ids
        return next(c for c in cards() if c.id == model or (head and c.id == head))

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_NOTE)


def create_app(pipe: Any, cfg: ServeConfig | None = None) -> FastAPI:
    """The server for `pipe` (a `unimodal.pipeline.Pipeline`) under the limits of `cfg`."""
    cfg = cfg or ServeConfig()
    api_key = cfg.api_key or os.environ.get("UNIMODAL_API_KEY", "")

    def new_worker() -> Worker:
        return Worker(cfg.max_batch, cfg.batch_window_ms / 1000, cfg.max_queue)

    state = ServerState(pipe, cfg, new_worker())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if not state.worker.alive:  # started again after a shutdown (e.g. several test clients)
            state.worker = new_worker()
        yield
        state.worker.close()

    app = FastAPI(
        title="unimodal",
        version="0.1.0",
        summary="Chat about images, generate and edit them: one Qwen2-VL backbone.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.server = state
    _install_handlers(app)
    app.add_middleware(Shield, cfg=cfg, api_key=api_key, send_error=send_error)
    if origins := split_list(cfg.allowed_origins):
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type"],
            expose_headers=["x-request-id", "retry-after"],
        )
    app.add_middleware(Guard, max_body_bytes=cfg.max_body_bytes)
    app.include_router(chat.router)
    app.include_router(completions.router)
    app.include_router(images.router)
    app.include_router(adapters.router)
    _server_routes(app, state, api_key)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app
