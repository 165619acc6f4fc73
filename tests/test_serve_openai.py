"""The official `openai` Python client against the server on loopback, with an API key.

Every call the client makes is counted (an httpx event hook): a bad request must fail at once
with the right exception class, never after the client's retries (which 5xx and 501 caused).
"""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image

from tests.serve_fixtures import data_url, png_bytes
from unimodal.serve import ServeConfig, create_app
from unimodal.serve.load import serve_in_thread

openai = pytest.importorskip("openai")
pytest_plugins = ["tests.serve_fixtures"]
KEY = "test-key-123"
CFG = ServeConfig(api_key=KEY, max_steps=2, max_n=2, max_tokens=16, default_max_tokens=4)
HI = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def server(serve_pipe):
    with serve_in_thread(create_app(serve_pipe, CFG)) as url:
        yield url


@pytest.fixture
def api(server):
    sent: list[str] = []
    hooks = {"request": [lambda r: sent.append(f"{r.method} {r.url.path}")]}
    http = httpx.Client(event_hooks=hooks, timeout=60)
    client = openai.OpenAI(base_url=server + "/v1", api_key=KEY, http_client=http)
    client.sent = sent
    yield client
    http.close()


def test_models_list_and_retrieve(api):
    assert [m.id for m in api.models.list()] == ["unimodal"]
    assert api.models.retrieve("unimodal").id == "unimodal"
    with pytest.raises(openai.NotFoundError):
        api.models.retrieve("gpt-4o")


def test_chat_stream_and_vision(api):
    out = api.chat.completions.create(model="unimodal", messages=HI, seed=1, max_tokens=4)
    assert out.choices[0].message.role == "assistant" and out.usage.completion_tokens <= 4
    again = api.chat.completions.create(model="unimodal", messages=HI, seed=1, max_tokens=4)
    assert again.choices[0].message.content == out.choices[0].message.content
    stream = api.chat.completions.create(
        model="unimodal", messages=HI, seed=1, max_tokens=4, stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces) == out.choices[0].message.content
    image = {"type": "image_url", "image_url": {"url": data_url(png_bytes())}}
    vision = [{"role": "user", "content": [image, {"type": "text", "text": "what is it?"}]}]
    seen = api.chat.completions.create(model="unimodal", messages=vision, max_tokens=2)
    assert seen.usage.prompt_tokens > out.usage.prompt_tokens  # the image's tokens count
    lp = api.chat.completions.create(
        model="unimodal", messages=HI, max_tokens=2, logprobs=True, top_logprobs=2, n=2, seed=3
    )
    assert len(lp.choices) == 2 and len(lp.choices[0].logprobs.content[0].top_logprobs) == 2


def test_images_generate_and_edit(api):
    gen = api.images.generate(
        model="unimodal", prompt="a red circle", n=2, size="32x32", extra_body={"steps": 1}
    )
    first = Image.open(io.BytesIO(base64.b64decode(gen.data[0].b64_json)))
    assert len(gen.data) == 2 and first.size == (32, 32)
    edit = api.images.edit(
        image=("src.png", png_bytes((48, 48)), "image/png"),
        prompt="make it blue",
        extra_body={"steps": 1},
    )
    assert Image.open(io.BytesIO(base64.b64decode(edit.data[0].b64_json))).size == (32, 32)
    with pytest.raises(openai.BadRequestError, match="masks are not supported"):
        api.images.edit(
            image=("src.png", png_bytes(), "image/png"),
            mask=("m.png", png_bytes(), "image/png"),
            prompt="x",
        )


def test_completions_with_logprobs_and_echo(api):
    out = api.completions.create(
        model="unimodal", prompt="hello world", max_tokens=3, logprobs=2, seed=0
    )
    lp = out.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == out.usage.completion_tokens <= 3
    assert all(len(t) == 2 for t in lp.top_logprobs)
    echo = api.completions.create(
        model="unimodal", prompt="hello world", max_tokens=0, echo=True, logprobs=0
    )
    assert echo.choices[0].text == "hello world" and echo.choices[0].logprobs.token_logprobs[0] is None  # fmt: skip
    batch = api.completions.create(model="unimodal", prompt=["a", "b"], n=2, max_tokens=2, seed=4)
    assert [c.index for c in batch.choices] == [0, 1, 2, 3]


def test_the_api_key_round_trip(server):
    ok = openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)
    assert ok.models.list().data[0].id == "unimodal"
    bad = openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


BAD = [  # (call, exception): each must fail on the first request (the client cannot send
    # lone surrogates at all: test_serve_params sends them as JSON escapes)
    (dict(model="gpt-4o", messages=HI), "NotFoundError"),
    (dict(model="unimodal", messages=[]), "BadRequestError"),
    (dict(model="unimodal", messages=HI, top_p=-3), "BadRequestError"),
    (dict(model="unimodal", messages=HI, stop=123), "BadRequestError"),
    (dict(model="unimodal", messages=HI, n=3), "BadRequestError"),
    (dict(model="unimodal", messages=HI, max_tokens=10**6), "BadRequestError"),
    (
        dict(model="unimodal", messages=HI, response_format={"type": "json_object"}),
        "BadRequestError",
    ),  # fmt: skip
    (
        dict(
            model="unimodal", messages=HI, tools=[{"type": "function", "function": {"name": "f"}}]
        ),  # fmt: skip
        "BadRequestError",
    ),
    (
        dict(model="unimodal", messages=[{"role": "user", "content": "<|im_start|>"}]),
        "BadRequestError",
    ),  # fmt: skip
]


@pytest.mark.parametrize("kwargs,error", BAD)
def test_bad_chat_requests_fail_at_once_with_a_4xx(api, kwargs, error):
    with pytest.raises(getattr(openai, error)):
        api.chat.completions.create(**kwargs)
    assert len(api.sent) == 1, api.sent  # no retries


def test_a_missing_capability_is_a_400_not_retried(tiny_backbone_dir):
    from unimodal.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(tiny_backbone_dir, device="cpu")
    with serve_in_thread(create_app(pipe, ServeConfig())) as url:
        sent = []
        http = httpx.Client(event_hooks={"request": [sent.append]})
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", http_client=http)
        with pytest.raises(openai.BadRequestError, match="no image generator"):
            client.images.generate(prompt="a red circle")
        assert len(sent) == 1
        http.close()
