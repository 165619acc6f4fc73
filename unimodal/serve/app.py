"""The FastAPI application: OpenAI-compatible routes, the web page, and error handling.

`create_app(pipe, cfg)` wires the routes of `unimodal.serve.chat` and `unimodal.serve.images`
to one `Worker` that owns the pipeline. Every error answer is JSON in OpenAI's shape
(`{"error": {"message", "type", "param", "code"}}`): limits give 400/404/413/429/501, schema
violations 422, malformed JSON 400. `Guard`, an ASGI middleware, caps the request body and
turns an unexpected exception into a 500 with a message while the server keeps serving.

Left out on purpose: authentication, CORS, and `response_format="url"` (nothing is stored).
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from unimodal.serve import chat, images
from unimodal.serve.limits import ApiError, ServeConfig, error_body
from unimodal.serve.schemas import Health, ModelCard, ModelList
from unimodal.serve.state import ClientGone, ServerState
from unimodal.serve.worker import Worker

log = logging.getLogger("unimodal.serve")
STATIC = resources.files("unimodal") / "serve" / "static"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {limit} bytes (max_body_bytes)")


class Guard:
    """ASGI middleware: cap the body size; unexpected errors become a JSON 500, not a crash."""

    def __init__(self, app: Any, max_body_bytes: int):
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False
        seen = 0

        async def counted_receive() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge(self.limit)
            return message

        async def tracked_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        length = dict(scope.get("headers", [])).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.limit:
            return await _send_json(send, 413, error_body(413, BodyTooLarge(self.limit).detail))
        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception as e:
            log.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                msg = f"internal error: {type(e).__name__}: {e}"[:500]
                await _send_json(send, 500, error_body(500, msg))


async def _send_json(send: Any, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _validation_message(exc: RequestValidationError) -> tuple[int, str, str | None]:
    """(status, message, param) for pydantic's errors: malformed JSON is 400, the rest 422."""
    errors = exc.errors()
    for err in errors:
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            return 400, f"malformed JSON body: {detail}".rstrip(": "), None
    parts, param = [], None
    for err in errors[:5]:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query")]
        param = param or (loc[0] if loc else None)
        parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return 422, "invalid request: " + "; ".join(parts) + more, param


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.status, exc.message, exc.param, exc.kind), exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, msg, param = _validation_message(exc)
        return JSONResponse(error_body(status, msg, param), status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        msg = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and msg == "Not Found":
            msg = f"no route {request.method} {request.url.path} (see /docs)"
        return JSONResponse(error_body(exc.status_code, msg), exc.status_code, exc.headers)

    @app.exception_handler(ClientGone)
    async def gone(request: Request, exc: ClientGone) -> JSONResponse:
        return JSONResponse(error_body(499, "client closed the request"), 499)


def create_app(pipe: Any, cfg: ServeConfig | None = None) -> FastAPI:
    """The server for `pipe` (a `unimodal.pipeline.Pipeline`) under the limits of `cfg`."""
    cfg = cfg or ServeConfig()

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
    )
    app.state.server = state
    _install_handlers(app)
    app.add_middleware(Guard, max_body_bytes=cfg.max_body_bytes)
    app.include_router(chat.router)
    app.include_router(images.router)

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
        )
        return JSONResponse(body.model_dump(), 200 if ok else 503)

    @app.get("/v1/models", response_model=ModelList, tags=["server"])
    async def models() -> ModelList:
        card = ModelCard(
            id=cfg.model_name, created=int(state.started), capabilities=state.capabilities()
        )
        return ModelList(data=[card])

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app
