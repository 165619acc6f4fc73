"""A bounded load test: many concurrent clients, a fixed request mix, a hard time limit.

`run_load(url, clients=32, requests=256)` sends a mix of /health, /v1/models, small chat and
small text-to-image requests from `clients` concurrent httpx clients and reports throughput,
latency percentiles and every non-2xx answer or transport error. `serve_in_thread(app)` runs an
app on a free loopback port for the duration of a `with` block (tests, benchmarks).

Left out on purpose: open-loop arrival rates and ramp-up schedules (this is a closed loop).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx


@dataclass
class LoadReport:
    requests: int
    ok: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    statuses: dict[str, int]
    by_kind: dict[str, dict[str, float]]
    errors: list[str] = field(default_factory=list)  # the first few failures, for people

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def request_mix(chat_tokens: int = 4, image_steps: int = 1) -> list[tuple[str, str, str, Any]]:
    """One round of the mix: (kind, method, path, json body); the load cycles through it."""
    chat = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": chat_tokens}
    image = {"prompt": "a red circle", "n": 1, "steps": image_steps}
    return [
        ("health", "GET", "/health", None),
        ("models", "GET", "/v1/models", None),
        ("health", "GET", "/health", None),
        ("chat", "POST", "/v1/chat/completions", chat),
        ("models", "GET", "/v1/models", None),
        ("health", "GET", "/health", None),
        ("models", "GET", "/v1/models", None),
        ("image", "POST", "/v1/images/generations", image),
    ]


async def _load(
    url: str, clients: int, total: int, mix: list, timeout_s: float
) -> tuple[list[tuple[str, float, int | str]], float]:
    results: list[tuple[str, float, int | str]] = []
    counter = iter(range(total))
    deadline = time.monotonic() + timeout_s

    async def client() -> None:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as http:
            for i in counter:
                kind, method, path, body = mix[i % len(mix)]
                if time.monotonic() > deadline:
                    results.append((kind, 0.0, "not sent: time limit reached"))
                    continue
                start = time.perf_counter()
                try:
                    r = await http.request(method, path, json=body)
                    outcome: int | str = r.status_code
                    if r.status_code >= 400:
                        outcome = f"{r.status_code} {path}: {r.text[:200]}"
                except httpx.HTTPError as e:
                    outcome = f"{type(e).__name__} {path}: {e}"
                results.append((kind, time.perf_counter() - start, outcome))

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), timeout_s + 30)
    return results, time.perf_counter() - start


def run_load(
    url: str,
    clients: int = 32,
    requests: int = 256,
    timeout_s: float = 120.0,
    chat_tokens: int = 4,
    image_steps: int = 1,
) -> LoadReport:
    """Send `requests` requests from `clients` concurrent clients; never runs past the limit."""
    mix = request_mix(chat_tokens, image_steps)
    results, seconds = asyncio.run(_load(url, clients, requests, mix, timeout_s))
    ok = [(k, t) for k, t, o in results if isinstance(o, int) and o < 400]
    times = [t for _, t in ok]
    by_kind = {}
    for kind in sorted({k for k, *_ in results}):
        kt = [t for k, t in ok if k == kind]
        by_kind[kind] = {
            "n": len(kt),
            "p50_ms": 1000 * _percentile(kt, 0.5),
            "p95_ms": 1000 * _percentile(kt, 0.95),
        }
    statuses = Counter(str(o) if isinstance(o, int) else "error" for *_, o in results)
    return LoadReport(
        requests=len(results),
        ok=len(ok),
        seconds=seconds,
        requests_per_s=len(results) / seconds if seconds else 0.0,
        p50_ms=1000 * _percentile(times, 0.5),
        p95_ms=1000 * _percentile(times, 0.95),
        statuses=dict(statuses),
        by_kind=by_kind,
        errors=[o for *_, o in results if isinstance(o, str)][:10],
    )


@contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Run `app` with uvicorn on a free port of `host`; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_keep_alive=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
