"""POST /v1/completions, the route a rollout engine answers: text or token ids in, per-token
log-probs out, echo to score a prompt, batches of prompts with n choices each."""

from __future__ import annotations

import json

import pytest
import torch
from fastapi.testclient import TestClient

from unimodal.backbone import Prompt
from unimodal.serve import ServeConfig, create_app

pytest_plugins = ["tests.serve_fixtures"]
CFG = ServeConfig(max_n=3, max_tokens=16, default_max_tokens=8, max_completion_choices=6)
DONE = "/v1/completions"


@pytest.fixture(scope="module")
def client(serve_pipe):
    with TestClient(create_app(serve_pipe, CFG), base_url="http://127.0.0.1") as c:
        yield c


def complete(client, **kw) -> dict:
    r = client.post(DONE, json=kw)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["model"] == "unimodal"
    return body


def test_echo_scores_the_prompt_with_the_models_log_probs(client, serve_pipe):
    bb = serve_pipe.backbone
    ids = bb.tokenizer("<|im_start|>user\nhello world<|im_end|>")["input_ids"]  # markers allowed
    body = complete(client, prompt=ids, max_tokens=0, echo=True, logprobs=2)
    (choice,) = body["choices"]
    lp = choice["logprobs"]
    assert choice["text"] == bb.tokenizer.decode(ids) and len(lp["tokens"]) == len(ids)
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    want, _ = bb.token_logprobs(Prompt(torch.tensor([ids]), torch.ones(1, len(ids)), {}))
    assert lp["token_logprobs"][1:] == pytest.approx(want[0].tolist(), abs=1e-4)
    assert all(len(t) <= 2 for t in lp["top_logprobs"][1:])
    assert lp["text_offset"][0] == 0 and lp["text_offset"] == sorted(lp["text_offset"])
    assert body["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 0, "total_tokens": len(ids)}  # fmt: skip


def test_sampling_with_seed_n_and_a_batch_of_prompts(client):
    one = complete(client, prompt="hello", max_tokens=5, seed=11)
    assert one["choices"] == complete(client, prompt="hello", max_tokens=5, seed=11)["choices"]
    batch = complete(client, prompt=["hello", "a red"], max_tokens=5, seed=10, n=2)
    assert [c["index"] for c in batch["choices"]] == [0, 1, 2, 3]
    assert batch["choices"][1]["text"] == one["choices"][0]["text"]  # choice j: seed + j
    alone = complete(client, prompt="a red", max_tokens=5, seed=11)["choices"][0]["text"]
    assert batch["choices"][3]["text"] == alone
    u = batch["usage"]
    assert u["completion_tokens"] <= 20 and u["prompt_tokens"] == one["usage"]["prompt_tokens"] + 2  # fmt: skip


def test_logprobs_echo_and_stop_together(client):
    full = complete(client, prompt="hello", max_tokens=8, temperature=0, logprobs=1)
    text = full["choices"][0]["text"]
    lp = full["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == full["usage"]["completion_tokens"]
    assert all(len(t) == 1 and v == pytest.approx(max(t.values())) for t, v in zip(lp["top_logprobs"], lp["token_logprobs"]))  # fmt: skip
    stop = text[3:5]
    cut = complete(client, prompt="hello", max_tokens=8, temperature=0, stop=stop)
    assert cut["choices"][0]["text"] == text[: text.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"
    echo = complete(client, prompt="hello", max_tokens=8, temperature=0, echo=True)
    assert echo["choices"][0]["text"] == "hello" + text


def test_streamed_completions_equal_the_plain_ones(client):
    plain = complete(client, prompt="hello", max_tokens=6, seed=2)["choices"][0]["text"]
    req = {"prompt": "hello", "max_tokens": 6, "seed": 2, "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    with client.stream("POST", DONE, json=req) as r:
        events = [json.loads(x[6:]) for x in r.iter_lines() if x.startswith("data: {")]
    assert "".join(c["text"] for e in events for c in e["choices"]) == plain
    assert events[-1]["usage"]["completion_tokens"] == 6


BAD = [
    ({"prompt": ""}, "prompt is empty"),
    ({"prompt": []}, "prompt is empty"),
    ({"prompt": [[]]}, "prompt.0 is empty"),
    ({"prompt": "a<|image_pad|>"}, "reserved token"),
    ({"prompt": [5]}, "not a text token"),  # <|image_pad|> of the tiny vocabulary
    ({"prompt": [10**9]}, "not a text token"),
    ({"prompt": "a", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "a", "max_tokens": 17}, "max_tokens"),
    ({"prompt": "a", "logprobs": 21}, "logprobs"),
    ({"prompt": "a", "suffix": "b"}, "suffix"),
    ({"prompt": "a", "best_of": 3}, "best_of"),
    ({"prompt": "a", "stream": True, "echo": True}, "echo"),
    ({"prompt": ["a"] * 3, "n": 3}, "choices"),
    ({"prompt": 7}, "prompt"),
]


@pytest.mark.parametrize("body,fragment", BAD)
def test_bad_completion_requests_are_a_400(client, body, fragment):
    r = client.post(DONE, json=body)
    assert r.status_code == 400 and fragment in r.json()["error"]["message"], r.text


def test_token_ids_for_rl_engines(client, serve_pipe):
    """vLLM's extensions: tokens as "token_id:N", token_ids / prompt_token_ids, stop_token_ids;
    the log-probs are the model's own for exactly those tokens."""
    bb = serve_pipe.backbone
    kw = {"logprobs": 0, "return_tokens_as_token_ids": True, "return_token_ids": True}
    body = complete(client, prompt=["hello", "a red"], max_tokens=6, seed=3, **kw)
    for c, p in zip(body["choices"], ["hello", "a red"]):
        ids, prompt = c["token_ids"], c["prompt_token_ids"]
        assert prompt == bb.tokenizer(p)["input_ids"] and len(ids) == 6
        assert c["logprobs"]["tokens"] == [f"token_id:{t}" for t in ids]
        assert c["text"] == bb.tokenizer.decode(ids, skip_special_tokens=True)
        seq = torch.tensor([prompt + ids])
        want, _ = bb.token_logprobs(Prompt(seq, torch.ones_like(seq), {}))
        assert c["logprobs"]["token_logprobs"] == pytest.approx(want[0, -6:].tolist(), abs=1e-4)
    greedy = complete(client, prompt="hello", max_tokens=6, temperature=0, **kw)["choices"][0]
    cut = complete(client, prompt="hello", max_tokens=6, temperature=0, stop_token_ids=[greedy["token_ids"][2]], **kw)  # fmt: skip
    (c,) = cut["choices"]
    assert c["finish_reason"] == "stop" and c["token_ids"] == greedy["token_ids"][:3]
    assert len(c["logprobs"]["tokens"]) == 3  # the ending token is returned, as vLLM does
    r = client.post(DONE, json={"prompt": "a", "stop_token_ids": [10**6]})
    assert r.status_code == 400 and "stop_token_ids" in r.json()["error"]["message"]
    r = client.post(DONE, json={"prompt": "a", "stream": True, "return_token_ids": True})
    assert r.status_code == 400 and "return_token_ids" in r.json()["error"]["message"]


def test_processed_logprobs_are_those_of_the_sampling_distribution(serve_pipe):
    bb, t = serve_pipe.backbone, 0.5
    cfg = ServeConfig(max_tokens=8, default_max_tokens=8, logprobs_mode="processed_logprobs")
    req = {"prompt": "hello", "max_tokens": 4, "seed": 1, "temperature": t, "logprobs": 0}
    req |= {"return_token_ids": True}
    with TestClient(create_app(serve_pipe, cfg), base_url="http://127.0.0.1") as c:
        (got,) = c.post(DONE, json=req).json()["choices"]
    seq = torch.tensor([got["prompt_token_ids"] + got["token_ids"]])
    want, _ = bb.token_logprobs(Prompt(seq, torch.ones_like(seq), {}), temperature=t)
    assert got["logprobs"]["token_logprobs"] == pytest.approx(want[0, -4:].tolist(), abs=1e-4)
    with pytest.raises(ValueError, match="logprobs_mode"):
        ServeConfig(logprobs_mode="logits")
