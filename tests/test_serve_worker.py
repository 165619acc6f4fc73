"""The single worker: micro-batching of compatible jobs, cancellation, and hang-ups over HTTP."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.serve_fixtures import block, decode_b64_png
from unimodal.serve import ServeConfig, create_app
from unimodal.serve.load import serve_in_thread
from unimodal.serve.worker import Job, QueueFull, Worker

pytest_plugins = ["tests.serve_fixtures"]


def recorder(calls: list):
    def run(payloads: list) -> list:
        calls.append(list(payloads))
        return [f"done {p}" for p in payloads]

    return run


def wait_until(cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_compatible_jobs_share_one_call_in_order():
    w = Worker(max_batch=4, batch_window_s=0.0)
    calls: list = []
    run = recorder(calls)
    release = block(w)
    jobs = [
        Job("a", run, key="k", weight=2),
        Job("b", run, key="other"),
        Job("c", run, key="k"),
        Job("d", run, key=None),
        Job("e", run, key="k", weight=2),  # would make 5 > max_batch: next call
        Job("f", run, key="k"),
    ]
    for j in jobs:
        w.submit(j)
    release.set()
    assert [j.future.result(10) for j in jobs] == [f"done {p}" for p in "abcdef"]
    assert calls == [["a", "c"], ["b"], ["d"], ["e", "f"]]
    assert w.stats.largest_batch == 2 and w.stats.jobs_run == 6 + 1
    w.close()


def test_batch_window_collects_jobs_that_arrive_soon():
    w = Worker(max_batch=8, batch_window_s=0.3)
    calls: list = []
    run = recorder(calls)
    first = w.submit(Job(1, run, key="k"))
    time.sleep(0.05)
    second = w.submit(Job(2, run, key="k"))
    assert (first.future.result(10), second.future.result(10)) == ("done 1", "done 2")
    assert calls == [[1, 2]]
    w.close()


def test_cancelled_jobs_never_run_and_errors_reach_only_their_jobs():
    w = Worker(max_batch=8, batch_window_s=0.0, max_queue=3)
    calls: list = []
    release = block(w)
    gone = w.submit(Job("gone", recorder(calls), key="k"))
    kept = w.submit(Job("kept", recorder(calls), key=None))
    bad = w.submit(Job("bad", lambda p: [1 / 0]))
    with pytest.raises(QueueFull):
        w.submit(Job("x", recorder(calls)))
    assert gone.future.cancel() and w.pending() == 2
    release.set()
    assert kept.future.result(10) == "done kept"
    with pytest.raises(ZeroDivisionError):
        bad.future.result(10)
    assert calls == [["kept"]] and w.stats.cancelled == 1 and w.stats.failed == 1
    assert w.submit(Job("after", recorder(calls))).future.result(10) == "done after"
    w.close()
    with pytest.raises(QueueFull):
        w.submit(Job("closed", recorder(calls)))


@pytest.fixture(scope="module")
def live(serve_pipe):
    cfg = ServeConfig(max_steps=4, default_max_tokens=4, batch_window_ms=0, disconnect_poll_s=0.05)
    app = create_app(serve_pipe, cfg)
    with serve_in_thread(app) as url:
        yield url, app.state.server.worker


def test_concurrent_generations_are_batched_over_http(live):
    url, worker = live
    before = worker.stats.batches
    release = block(worker)

    async def go():
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            reqs = [{"prompt": p, "n": n, "seed": 1} for p, n in (("a", 1), ("b", 2), ("c", 1))]
            tasks = [asyncio.create_task(c.post("/v1/images/generations", json=r)) for r in reqs]
            await asyncio.sleep(0.2)
            wait_until(lambda: worker.pending() == 3, 10)
            release.set()
            return await asyncio.gather(*tasks)

    answers = asyncio.run(go())
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert [len(r.json()["data"]) for r in answers] == [1, 2, 1]
    assert all(decode_b64_png(d["b64_json"]).size == (32, 32) for d in answers[1].json()["data"])
    assert worker.stats.batches == before + 2  # the blocking job, then one batch of three
    assert worker.stats.largest_batch == 3


def test_a_client_that_hangs_up_cancels_its_queued_job(live):
    url, worker = live
    run_before, cancelled_before = worker.stats.jobs_run, worker.stats.cancelled
    release = block(worker)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/images/generations", json={"prompt": "a"}, timeout=0.5)
    chat = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=chat, timeout=10) as r:
        first = next(r.iter_lines())  # the role chunk comes at once; then hang up
        assert first.startswith("data: ") and '"role": "assistant"' in first
    wait_until(lambda: worker.pending() == 0)  # both hang-ups seen while the worker is busy
    release.set()
    wait_until(lambda: worker.stats.cancelled == cancelled_before + 2 and worker.pending() == 0)
    assert worker.stats.jobs_run == run_before + 1  # only the blocking job ran
    assert httpx.get(f"{url}/health", timeout=10).json()["status"] == "ok"


def test_a_client_that_hangs_up_stops_its_running_chat(serve_pipe):
    cfg = ServeConfig(max_tokens=3000, disconnect_poll_s=0.05)
    with serve_in_thread(create_app(serve_pipe, cfg)) as url:
        long = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3000}
        long |= {"seed": 0, "temperature": 1}  # about 12 s of decoding on two CPU cores
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/chat/completions", json=long, timeout=0.5)
        start = time.monotonic()
        short = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        r = httpx.post(f"{url}/v1/chat/completions", json=short, timeout=60)
        assert r.status_code == 200
        assert time.monotonic() - start < 4.0  # the abandoned decode stopped between tokens
