"""Chat and image parameters as OpenAI defines them: honoured, or a 400 that names them; no 5xx.

Invalid Unicode (a lone surrogate, JSON's "\\ud800") in any field is a 400; error messages quote
at most a short prefix of a bad value; chat honours seed, n (choice i = seed + i), stop, top_p,
logprobs / top_logprobs, the developer role, and OpenAI's default temperature of 1.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from tests.serve_fixtures import png_bytes
from unimodal.serve import ServeConfig, create_app

pytest_plugins = ["tests.serve_fixtures"]
CFG = ServeConfig(max_steps=2, max_n=3, max_tokens=16, default_max_tokens=6, max_body_bytes=1 << 20)
CHAT, GEN, EDIT = "/v1/chat/completions", "/v1/images/generations", "/v1/images/edits"
HI = [{"role": "user", "content": "hello"}]
S = "\ud800"  # a lone surrogate


@pytest.fixture(scope="module")
def client(serve_pipe):
    with TestClient(create_app(serve_pipe, CFG), base_url="http://127.0.0.1") as c:
        yield c


def post_raw(client, path: str, body) -> object:
    """POST `body` as JSON text; json.dumps writes a lone surrogate as the escape \\ud800."""
    data = json.dumps(body).encode()
    return client.post(path, content=data, headers={"content-type": "application/json"})


def chat(client, **kw) -> dict:
    r = client.post(CHAT, json={"messages": HI, "max_tokens": 6} | kw)
    assert r.status_code == 200, r.text
    return r.json()


def text(body: dict, i: int = 0) -> str:
    return body["choices"][i]["message"]["content"]


UNICODE = [
    (CHAT, {"model": S, "messages": HI}),
    (CHAT, {"messages": [{"role": "user", "content": "a" + S}]}),
    (CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": S}]}]}),
    (CHAT, {"messages": [{"role": "user", "content": "a" + S}], "stream": True}),
    (CHAT, {"messages": HI, "stop": [S]}),
    (CHAT, {"messages": HI, "user": S}),
    (CHAT, {"messages": HI, S: 1}),
    (CHAT, {"messages": [{"role": "user", "name": S, "content": "x"}]}),
    (
        CHAT,
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": S}}]}
            ]
        },  # fmt: skip
    ),
    (GEN, {"prompt": "a" + S}),
    (GEN, {"prompt": "a", "size": S}),
    (GEN, {"prompt": "a", "model": S}),
    ("/v1/completions", {"prompt": S}),
    ("/v1/completions", {"prompt": ["ok", S]}),
]


@pytest.mark.parametrize("path,body", UNICODE)
def test_a_lone_surrogate_in_any_field_is_a_400(client, path, body):
    r = post_raw(client, path, body)
    assert r.status_code == 400, r.text
    assert "not valid Unicode" in r.json()["error"]["message"]


def test_other_routes_with_invalid_unicode_give_no_5xx(client):
    r = client.get("/v1/models/%ED%A0%80")  # invalid UTF-8 in the path
    assert r.status_code == 404 and r.json()["error"]["code"] == 404
    form = (
        b'--B\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nab\xed\xa0\x80\xff\r\n'
        b'--B\r\nContent-Disposition: form-data; name="image"; filename="x\xff.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + png_bytes() + b"\r\n--B--\r\n"
    )
    r = client.post(EDIT, content=form, headers={"content-type": "multipart/form-data; boundary=B"})
    assert r.status_code < 500, r.text


def test_error_messages_quote_a_short_prefix_of_a_bad_value(client):
    for path, body in [
        (CHAT, {"model": "m" * 200_000, "messages": HI}),
        (GEN, {"prompt": "a", "size": "s" * 200_000}),
        (CHAT, {"messages": HI, "k" * 200_000: 1}),
    ]:
        r = client.post(path, json=body)
        assert 400 <= r.status_code < 500 and len(r.content) < 600, r.text[:600]


def test_seed_n_and_the_default_temperature(client):
    a, b = chat(client, seed=7), chat(client, seed=7)
    assert text(a) == text(b)  # same seed, same answer
    assert text(chat(client, seed=7, temperature=1)) == text(a)  # OpenAI's default is 1
    assert text(chat(client, seed=7, temperature=0)) != text(a)
    two = chat(client, seed=7, n=2)
    assert [c["index"] for c in two["choices"]] == [0, 1] and text(two, 0) == text(a)
    assert text(two, 1) == text(chat(client, seed=8))  # choice i is sampled with seed + i
    assert two["usage"]["completion_tokens"] == 12 and two["usage"]["prompt_tokens"] > 0


def test_stop_sequences_end_the_answer_and_are_not_returned(client):
    full = text(chat(client, seed=3, max_tokens=12))
    stop = full[4:6]
    assert stop and stop not in full[:4]
    body = chat(client, seed=3, max_tokens=12, stop=[stop, "zzzq"])
    assert text(body) == full[: full.index(stop)] and body["choices"][0]["finish_reason"] == "stop"
    with client.stream("POST", CHAT, json={"messages": HI, "seed": 3, "max_tokens": 12, "stop": stop, "stream": True}) as r:  # fmt: skip
        chunks = [json.loads(x[6:]) for x in r.iter_lines() if x and x != "data: [DONE]"]
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert streamed == text(body)


def test_top_p_near_zero_is_greedy(client):
    assert text(chat(client, seed=5, top_p=1e-6)) == text(chat(client, temperature=0))


def test_logprobs_are_the_models(client, serve_pipe):
    body = chat(client, temperature=0, max_tokens=3, logprobs=True, top_logprobs=3)
    content = body["choices"][0]["logprobs"]["content"]
    assert len(content) == 3 and "".join(t["token"] for t in content).startswith(text(body))
    for t in content:
        alts = t["top_logprobs"]
        assert len(alts) == 3 and alts[0]["logprob"] >= alts[1]["logprob"] >= alts[2]["logprob"]
        assert t["logprob"] == pytest.approx(alts[0]["logprob"])  # greedy: the top token
        assert bytes(t["bytes"]).decode("utf-8", "replace") == t["token"]
    bb = serve_pipe.backbone
    prompt = bb.encode_chat([HI], [[]])
    first = torch.log_softmax(bb.logits(prompt)[0, -1].float(), -1).max().item()
    assert content[0]["logprob"] == pytest.approx(first, abs=1e-4)
    assert chat(client)["choices"][0]["logprobs"] is None


def test_the_developer_role_is_a_system_message(client):
    dev = [{"role": "developer", "content": "be brief"}, *HI]
    sys_ = [{"role": "system", "content": "be brief"}, *HI]
    a = client.post(CHAT, json={"messages": dev, "temperature": 0, "max_tokens": 6})
    b = client.post(CHAT, json={"messages": sys_, "temperature": 0, "max_tokens": 6})
    assert a.status_code == 200 and text(a.json()) == text(b.json())


UNSUPPORTED = [  # (path, body, the parameter named in the answer)
    (CHAT, {"messages": HI, "top_p": -3}, "top_p"),
    (CHAT, {"messages": HI, "top_p": 1.5}, "top_p"),
    (CHAT, {"messages": HI, "stop": 123}, "stop"),
    (CHAT, {"messages": HI, "stop": ["a"] * 5}, "stop"),
    (CHAT, {"messages": HI, "seed": -1}, "seed"),
    (CHAT, {"messages": HI, "n": 4}, "n"),
    (CHAT, {"messages": HI, "top_logprobs": 2}, "top_logprobs"),
    (CHAT, {"messages": HI, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    (CHAT, {"messages": HI, "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    (CHAT, {"messages": HI, "response_format": {"type": "json_object"}}, "response_format"),
    (CHAT, {"messages": HI, "frequency_penalty": 0.5}, "frequency_penalty"),
    (CHAT, {"messages": HI, "logit_bias": {"1": 5}}, "logit_bias"),
    (CHAT, {"messages": HI, "functions": [{"name": "f"}]}, "functions"),
    (CHAT, {"messages": HI, "modalities": ["audio"]}, "modalities"),
    (CHAT, {"messages": [{"role": "tool", "content": "x"}]}, "role"),
    (GEN, {"prompt": "a", "quality": "hd"}, "quality"),
    (GEN, {"prompt": "a", "style": "vivid"}, "style"),
    (GEN, {"prompt": "a", "output_format": "gif"}, "output_format"),
    (GEN, {"prompt": "a", "output_compression": 101}, "output_compression"),
]


@pytest.mark.parametrize("path,body,param", UNSUPPORTED)
def test_unsupported_or_invalid_parameters_are_a_400_that_names_them(client, path, body, param):
    r = client.post(path, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert param in err["message"] and param in (err["param"] or ""), err


def test_neutral_values_of_unsupported_parameters_are_accepted(client):
    neutral = {"tools": [], "tool_choice": "none", "frequency_penalty": 0, "logit_bias": {}}
    neutral |= {"response_format": {"type": "text"}, "user": "u", "metadata": {"a": "b"}}
    assert chat(client, **neutral)["choices"][0]["finish_reason"] in ("stop", "length")


def test_models_retrieve(client):
    card = client.get("/v1/models/unimodal").json()
    assert card["id"] == "unimodal" and card["object"] == "model"
    r = client.get("/v1/models/gpt-4o")
    assert r.status_code == 404 and r.json()["error"]["type"] == "model_not_found"


def test_image_output_formats_and_refused_edit_parameters(client):
    for fmt, pil in [("jpeg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")]:
        r = client.post(
            GEN, json={"prompt": "a red circle", "output_format": fmt, "quality": "auto"}
        )
        assert r.status_code == 200 and r.json()["output_format"] == fmt
        img = Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"])))
        assert img.format == pil and img.size == (32, 32)
    files = {"image": ("a.png", png_bytes(), "image/png"), "mask": ("m.png", png_bytes(), "image/png")}  # fmt: skip
    r = client.post(EDIT, files=files, data={"prompt": "blue"})
    assert r.status_code == 400 and "masks are not supported" in r.json()["error"]["message"]
    files = {"image": ("a.png", png_bytes(), "image/png")}
    r = client.post(EDIT, files=files, data={"prompt": "blue", "style": "vivid"})
    assert r.status_code == 400 and "'style' is not a supported parameter" in r.text
