"""The HTTP API's contract with a tiny trained model: every route, SSE, and every limit."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.serve_fixtures import block, data_url, decode_b64_png, png_bytes
from unimodal.serve import ServeConfig, create_app

pytest_plugins = ["tests.serve_fixtures"]  # fixtures: serve_model_dir, serve_pipe

CFG = ServeConfig(
    max_steps=4,
    max_n=3,
    max_tokens=32,
    default_max_tokens=8,
    max_prompt_chars=100,
    max_chat_chars=500,
    max_messages=6,
    max_images_per_chat=2,
    max_image_side=256,
    max_megapixels=0.01,
    max_image_bytes=50_000,
    max_body_bytes=200_000,
    max_aspect_ratio=4,
    max_guidance=10,
    max_seed=1000,
    max_queue=2,
)
CHAT, GEN, EDIT = "/v1/chat/completions", "/v1/images/generations", "/v1/images/edits"
LOCAL = "http://127.0.0.1"  # the server is bound to loopback: only loopback Host headers pass
CAPS = ["chat.completions", "completions", "images.generations", "images.edits"]


@pytest.fixture(scope="module")
def client(serve_pipe):
    with TestClient(create_app(serve_pipe, CFG), base_url=LOCAL) as c:
        yield c


def user(*parts, text: str = "what is this?") -> dict:
    content = [{"type": "image_url", "image_url": {"url": u}} for u in parts]
    return {"role": "user", "content": content + [{"type": "text", "text": text}]}


def test_health_models_and_openapi(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["model"] == "unimodal"
    assert h["capabilities"] == CAPS
    assert h["limits"]["image_size"] == 32 and h["limits"]["max_steps"] == 4
    models = client.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["unimodal"] and models["object"] == "list"
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/v1/models", CHAT, GEN, EDIT} <= set(paths)
    assert "multipart/form-data" in paths[EDIT]["post"]["requestBody"]["content"]


def test_chat_with_an_image_matches_the_pipeline(client, serve_pipe):
    img = png_bytes((40, 30))
    req = {"model": "unimodal", "messages": [user(data_url(img))], "temperature": 0}
    r = client.post(CHAT, json=req)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "unimodal"
    (choice,) = body["choices"]
    expected = serve_pipe.chat(
        [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": "what is this?"}],
            }
        ],
        [Image.new("RGB", (40, 30), (200, 30, 30))],
        max_new_tokens=8,
    )
    assert choice["message"] == {"role": "assistant", "content": expected}
    assert choice["finish_reason"] in ("stop", "length")
    u = body["usage"]
    assert (
        u["completion_tokens"] > 0
        and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    )


def test_chat_stream_is_sse_and_equals_the_plain_answer(client):
    req = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 6, "seed": 4}
    plain = client.post(CHAT, json=req).json()["choices"][0]["message"]["content"]
    stream = {**req, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", CHAT, json=stream) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == plain
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finals) == 1 and finals[0]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6


def test_generate_returns_the_pipelines_images(client, serve_pipe):
    r = client.post(GEN, json={"prompt": "a red circle", "n": 2, "seed": 3, "size": "32x32"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["size"] == "32x32" and len(body["data"]) == 2
    got = [np.asarray(decode_b64_png(d["b64_json"])) for d in body["data"]]
    want = serve_pipe.generate("a red circle", seed=3, num_images=2)
    assert all(g.shape == (32, 32, 3) for g in got)
    assert all(np.array_equal(g, np.asarray(w)) for g, w in zip(got, want))


def test_edit_multipart_returns_the_pipelines_edit(client, serve_pipe):
    src = png_bytes((48, 48), (20, 200, 20))
    files = {"image": ("src.png", src, "image/png")}
    r = client.post(EDIT, files=files, data={"prompt": "make it blue", "n": "2", "seed": "5"})
    assert r.status_code == 200, r.text
    got = [np.asarray(decode_b64_png(d["b64_json"])) for d in r.json()["data"]]
    source = Image.new("RGB", (48, 48), (20, 200, 20))
    want = serve_pipe.edit(source, "make it blue", seed=5, num_images=2)
    assert len(got) == 2 and all(np.array_equal(g, np.asarray(w)) for g, w in zip(got, want))


PNG = png_bytes()
JSON = {"content-type": "application/json"}
BAD = [  # (path, request kwargs, status, fragment of the message)
    (CHAT, {"content": b'{"messages": [', "headers": JSON}, 400, "malformed JSON"),
    (CHAT, {"json": {}}, 400, "messages: Field required"),
    (CHAT, {"json": {"messages": []}}, 400, "messages"),
    (CHAT, {"json": {"messages": "hi"}}, 400, "messages"),
    (CHAT, {"json": {"messages": [{"role": "robot", "content": "x"}]}}, 400, "role"),
    (CHAT, {"json": {"messages": [{"role": "user", "content": [{"type": "audio"}]}]}}, 400, "tag"),
    (CHAT, {"json": {"messages": [user()], "max_tokens": 0}}, 400, "max_tokens"),
    (CHAT, {"json": {"messages": [user()], "max_tokens": 33}}, 400, "max_tokens must lie in"),
    (CHAT, {"json": {"messages": [user()], "temperature": 5}}, 400, "temperature"),
    (CHAT, {"json": {"messages": [user()], "n": 4}}, 400, "n must lie in [1, 3]"),
    (CHAT, {"json": {"messages": [user()], "model": "gpt-4o"}}, 404, "unknown model 'gpt-4o'"),
    (CHAT, {"json": {"messages": [user()] * 7}}, 400, "7 messages; the limit is 6"),
    (CHAT, {"json": {"messages": [user(text="x" * 501)]}}, 400, "501 characters"),
    (CHAT, {"json": {"messages": [{"role": "user", "content": ""}]}}, 400, "no text and no image"),
    (CHAT, {"json": {"messages": [user("https://example.com/a.png")]}}, 400, "only data: URLs"),
    (CHAT, {"json": {"messages": [user("data:image/png;base64,@@@")]}}, 400, "invalid base64"),
    (
        CHAT,
        {"json": {"messages": [user(data_url(PNG).replace(";base64", ""))]}},
        400,
        "base64,<data>",
    ),
    (CHAT, {"json": {"messages": [user(data_url(b"hello"))]}}, 400, "not a decodable PNG"),
    (CHAT, {"json": {"messages": [user(data_url(PNG[:60]))]}}, 400, "not a decodable image"),
    (CHAT, {"json": {"messages": [user(data_url(png_bytes((300, 100))))]}}, 400, "px a side"),
    (CHAT, {"json": {"messages": [user(data_url(png_bytes((120, 120))))]}}, 400, "megapixels"),
    (CHAT, {"json": {"messages": [user(data_url(png_bytes((100, 10))))]}}, 400, "aspect ratio"),
    (CHAT, {"json": {"messages": [user(*[data_url(PNG)] * 3)]}}, 400, "more than 2 images"),
    (CHAT, {"json": {"messages": [user(data_url(os.urandom(60_000)))]}}, 413, "larger than"),
    (CHAT, {"json": {"messages": [user(text="<|image_pad|>")]}}, 400, "reserved token"),
    (CHAT, {"json": {"messages": [{"role": "user", "content": "a<|im_end|>"}]}}, 400, "reserved"),
    (GEN, {"json": {"prompt": "<|vision_start|>x"}}, 400, "reserved token '<|vision_start|>'"),
    (
        EDIT,
        {"files": {"image": ("a.png", PNG, "image/png")}, "data": {"prompt": "<|video_pad|>"}},
        400,
        "reserved token",
    ),
    (GEN, {"json": {"n": 1}}, 400, "prompt: Field required"),
    (GEN, {"json": {"prompt": ""}}, 400, "prompt"),
    (GEN, {"json": {"prompt": "   "}}, 400, "prompt is empty"),
    (GEN, {"json": {"prompt": "x" * 101}}, 400, "101 characters; the limit is 100"),
    (GEN, {"json": {"prompt": 7}}, 400, "valid string"),
    (GEN, {"json": {"prompt": "a", "n": 0}}, 400, "n:"),
    (GEN, {"json": {"prompt": "a", "n": 4}}, 400, "n must lie in [1, 3]"),
    (GEN, {"json": {"prompt": "a", "n": "two"}}, 400, "n:"),
    (GEN, {"json": {"prompt": "a", "steps": 0}}, 400, "steps"),
    (GEN, {"json": {"prompt": "a", "steps": 5}}, 400, "steps must lie in [1, 4]"),
    (GEN, {"json": {"prompt": "a", "guidance": -1}}, 400, "guidance"),
    (GEN, {"json": {"prompt": "a", "guidance": 11}}, 400, "guidance must lie in [0, 10]"),
    (GEN, {"json": {"prompt": "a", "seed": 1001}}, 400, "seed must lie"),
    (GEN, {"json": {"prompt": "a", "seed": 10**30}}, 400, "seed must lie"),
    (GEN, {"json": {"prompt": "a", "size": "big"}}, 400, "size must look like '32x32'"),
    (GEN, {"json": {"prompt": "a", "size": "64x64"}}, 400, "this model draws 32x32"),
    (GEN, {"json": {"prompt": "a", "response_format": "url"}}, 400, "'url' is not supported"),
    (GEN, {"json": {"prompt": "a", "response_format": "png"}}, 400, "response_format"),
    (GEN, {"json": {"prompt": "a", "model": "dall-e-3"}}, 404, "unknown model"),
    (GEN, {"content": b"[1, 2]", "headers": JSON}, 400, "body"),
    (GEN, {"content": b"x" * 300_000}, 413, "larger than 200000 bytes"),
    (EDIT, {"data": {"prompt": "blue"}}, 400, "image: send exactly one image file"),
    (EDIT, {"files": {"image": ("a.png", PNG, "image/png")}}, 400, "prompt: Field required"),
    (
        EDIT,
        {"files": {"image": ("a.txt", b"text", "text/plain")}, "data": {"prompt": "b"}},
        400,
        "not a decodable PNG",
    ),
    (
        EDIT,
        {"files": {"image": ("a.png", b"", "image/png")}, "data": {"prompt": "b"}},
        400,
        "empty",
    ),
    (EDIT, {"data": {"image": "not a file", "prompt": "b"}}, 400, "image"),
    (
        EDIT,
        {"files": {"image": ("a.png", PNG, "image/png")}, "data": {"prompt": "b", "n": "x"}},
        400,
        "n:",
    ),
    (
        EDIT,
        {"files": {"image": ("a.png", PNG, "image/png")}, "data": {"prompt": "b", "steps": 9}},
        400,
        "steps must lie",
    ),
    (
        EDIT,
        {
            "files": {"image": ("a.png", PNG, "image/png")},
            "data": {"prompt": "b", "image_guidance": 11},
        },
        400,
        "image_guidance must lie",
    ),
    (
        EDIT,
        {
            "files": {"image": ("a.png", png_bytes((400, 200)), "image/png")},
            "data": {"prompt": "b"},
        },
        400,
        "px a side",
    ),
    (EDIT, {"json": {"prompt": "b"}}, 400, "prompt"),
]


@pytest.mark.parametrize("path,kwargs,status,fragment", BAD)
def test_bad_input_gets_a_clear_4xx(client, path, kwargs, status, fragment):
    r = client.post(path, **kwargs)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert fragment in err["message"] and err["code"] == status
    assert err["type"] in ("invalid_request_error", "model_not_found")


def test_unknown_routes_methods_and_chunked_oversize_bodies(client):
    for method, path, status in [("GET", "/nope", 404), ("DELETE", "/health", 405),
                                 ("GET", CHAT, 405)]:  # fmt: skip
        r = client.request(method, path)
        assert r.status_code == status and r.json()["error"]["message"]
    chunks = iter([b"[" + b"1," * 60_000] * 3)  # no content-length: counted as it arrives
    r = client.post(GEN, content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["error"]["message"]


def test_full_queue_gives_429_and_unexpected_errors_a_500(client, serve_pipe, monkeypatch, caplog):
    worker = client.app.state.server.worker
    release = block(worker)
    from unimodal.serve.worker import Job

    try:
        queued = [worker.submit(Job(None, lambda p: [None])) for _ in range(CFG.max_queue)]
        r = client.post(GEN, json={"prompt": "a"})
        assert r.status_code == 429 and "server busy" in r.json()["error"]["message"]
        assert r.headers["retry-after"] == "1"
    finally:
        release.set()
    for job in queued:  # the queue drains before the next request (else it is still full)
        job.future.result(timeout=30)
    monkeypatch.setattr(serve_pipe, "generate", lambda *a, **k: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="unimodal.serve"):
        r = client.post(GEN, json={"prompt": "a"})
    assert r.status_code == 500, r.text
    msg, rid = r.json()["error"]["message"], r.headers["x-request-id"]
    assert msg.startswith("internal error") and rid in msg and "ZeroDivision" not in msg
    assert rid in caplog.text and "ZeroDivisionError" in caplog.text  # the traceback is logged
    monkeypatch.undo()
    assert client.get("/health").json()["status"] == "ok"
    assert client.post(CHAT, json={"messages": [user()]}).status_code == 200


def test_server_is_healthy_after_the_abuse(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["queued"] == 0
    assert client.post(GEN, json={"prompt": "a blue square"}).status_code == 200


def test_a_chat_only_folder_serves_chat_and_refuses_images(tiny_backbone_dir):
    from unimodal.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(tiny_backbone_dir, device="cpu")
    with TestClient(create_app(pipe, CFG), base_url=LOCAL) as c:
        caps = c.get("/v1/models").json()["data"][0]["capabilities"]
        assert caps == ["chat.completions", "completions"]
        assert c.post(CHAT, json={"messages": [user(data_url(PNG))]}).status_code == 200
        r = c.post(GEN, json={"prompt": "a red circle"})
        assert r.status_code == 400 and "no image generator" in r.json()["error"]["message"]
        files = {"image": ("a.png", PNG, "image/png")}
        r = c.post(EDIT, files=files, data={"prompt": "blue"})
        assert r.status_code == 400 and "chat only" in r.json()["error"]["message"]
