"""A bounded load test on loopback: 32 concurrent clients, a few hundred mixed requests."""

from __future__ import annotations

import json

import httpx

from unimodal.serve import ServeConfig, create_app
from unimodal.serve.load import run_load, serve_in_thread

pytest_plugins = ["tests.serve_fixtures"]


def test_every_request_is_answered_under_load(serve_pipe):
    app = create_app(serve_pipe, ServeConfig(max_queue=128, default_max_tokens=4))
    with serve_in_thread(app) as url:
        report = run_load(url, clients=32, requests=320, timeout_s=120, image_steps=1)
        print("\nserve load:", json.dumps(report.to_dict()))  # benchmark output, not asserted
        assert report.errors == [] and report.statuses == {"200": 320}
        assert report.ok == report.requests == 320
        assert {k: v["n"] for k, v in report.by_kind.items()} == {
            "chat": 40,
            "health": 120,
            "image": 40,
            "models": 120,
        }
        health = httpx.get(f"{url}/health", timeout=10).json()
        stats = health["stats"]
        assert health["status"] == "ok" and health["queued"] == 0 and stats["failed"] == 0
        assert stats["jobs_run"] == 80 and stats["batches"] < 80  # image requests were batched
        r = httpx.post(f"{url}/v1/images/generations", json={"prompt": "a"}, timeout=60)
        assert r.status_code == 200
