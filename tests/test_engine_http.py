"""The HTTP rollout engine against scripted answers (httpx.MockTransport): request shapes,
batching and seeds, retries, clear errors, the tokenizer check and hot-loading requests."""

from __future__ import annotations

import json

import httpx
import pytest
import torch

import reasoning.pg.http_engine as H
from reasoning.pg.engine import EngineConfig, make_engine
from reasoning.pg.http_engine import EngineError, HTTPEngine, _requests
from unimodal.backbone import Backbone
from unimodal.config import ConfigError, load_config

URL = "http://engine.test:9"


@pytest.fixture(scope="module")
def bb(tiny_backbone_dir):
    return Backbone.from_pretrained(tiny_backbone_dir).freeze()


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(H.time, "sleep", lambda s: None)


def completion(body: dict) -> dict:
    """A vLLM-shaped answer: prompt p's tokens are [p0 + 1, seed % 7 + 3, eos]."""
    eos = body["stop_token_ids"][-1]
    choices = []
    for i, ids in enumerate(body["prompt"]):
        toks = [ids[0] + 1, body["seed"] % 7 + 3, eos]
        choices.append({
            "index": i, "text": "x", "finish_reason": "stop", "token_ids": toks,
            "prompt_token_ids": ids,
            "logprobs": {"tokens": [f"token_id:{t}" for t in toks],
                         "token_logprobs": [-0.5, -1.0, -0.1]},
        })  # fmt: skip
    return {"choices": choices}


def engine(handler, **kw) -> HTTPEngine:
    return HTTPEngine(
        URL, "/tmp/unused", model="base", transport=httpx.MockTransport(handler), **kw
    )


def test_requests_never_repeat_a_prompt_and_respect_the_size():
    groups = _requests(["a", "b", "a", "b", "c", "a"], 2)
    assert groups == [[0, 1], [4], [2, 3], [5]]


def test_generate_batches_seeds_and_maps_choices_back(bb):
    seen = []

    def handler(req: httpx.Request) -> httpx.Response:
        body = json.loads(req.content)
        seen.append(body)
        return httpx.Response(200, json=completion(body))

    eng = engine(handler, request_batch=2, concurrency=3)
    eng.names["h"] = "h-step3"
    prompts = ["p one", "p two", "p one", "p two", "p three"]
    rolls = eng.generate(bb, prompts, "h", 5, 1.0, 0.9, torch.Generator().manual_seed(1))
    assert len(seen) == 3 and len({b["seed"] for b in seen}) == 3
    for b in seen:
        assert b["model"] == "h-step3" and b["logprobs"] == 0 and b["max_tokens"] == 5
        assert b["return_tokens_as_token_ids"] and b["stop_token_ids"] == bb.eos_token_ids
        assert len({tuple(p) for p in b["prompt"]}) == len(b["prompt"])  # distinct in a request
    ids = bb.tokenizer(prompts)["input_ids"]
    for r, p in zip(rolls, ids):
        assert r.prompt_ids.tolist() == p and r.completion_ids[0] == p[0] + 1
        assert (
            r.from_engine
            and r.finished
            and r.logprobs.tolist() == pytest.approx([-0.5, -1.0, -0.1])
        )
    assert rolls[0].completion_ids[1] != rolls[2].completion_ids[1]  # one prompt, two seeds
    again = eng.generate(bb, prompts, "h", 5, 1.0, 0.9, torch.Generator().manual_seed(1))
    assert [r.completion_ids.tolist() for r in again] == [r.completion_ids.tolist() for r in rolls]
    with pytest.raises(EngineError, match="never published"):
        eng.generate(bb, prompts, "other", 5)


def test_retries_then_success_and_clear_failures(bb):
    calls = []

    def flaky(req):
        calls.append(1)
        if len(calls) < 3:
            return httpx.Response(503, json={"error": {"message": "warming up"}})
        return httpx.Response(200, json=completion(json.loads(req.content)))

    assert len(engine(flaky, retries=3).generate(bb, ["a"], None, 3)) == 1 and len(calls) == 3
    calls.clear()
    with pytest.raises(EngineError, match="HTTP 503: warming up"):
        engine(flaky, retries=1).generate(bb, ["a"], None, 3)

    def refuse(req):
        calls.append(1)
        return httpx.Response(400, json={"error": {"message": "max_tokens is too large"}})

    calls.clear()
    with pytest.raises(EngineError, match=r"completions: HTTP 400: max_tokens is too large"):
        engine(refuse).generate(bb, ["a"], None, 3)
    assert len(calls) == 1  # a refusal is not retried

    def down(req):
        calls.append(1)
        raise httpx.ConnectError("connection refused")

    calls.clear()
    with pytest.raises(EngineError, match=r"engine http://engine.test:9/v1/completions: Connect"):
        engine(down, retries=2).generate(bb, ["a"], None, 3)
    assert len(calls) == 3


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda c: c["logprobs"].update(tokens=["hello"] * 3), "does not return token ids"),
        (lambda c: c.update(token_ids=[1, 2, 3]), "disagree"),
        (lambda c: c["logprobs"].update(token_logprobs=[-1.0]), "1 log-probs for 3 tokens"),
        (lambda c: c.update(prompt_token_ids=[0] + c["prompt_token_ids"]), "changed the prompt"),
        (lambda c: c.pop("logprobs"), "sent no log-probs"),
    ],
)
def test_answers_in_another_shape_are_clear_errors(bb, change, fragment):
    def handler(req):
        answer = completion(json.loads(req.content))
        change(answer["choices"][0])
        return httpx.Response(200, json=answer)

    with pytest.raises(EngineError, match=fragment):
        engine(handler).generate(bb, ["a"], None, 3)


def test_tokenizer_check(bb):
    def echo(shift):
        def handler(req):
            body = json.loads(req.content)
            ids = bb.tokenizer(body["prompt"])["input_ids"]
            ids = [ids[0], ids[1] + shift, *ids[2:], 7]
            toks = [f"token_id:{t}" for t in ids]
            return httpx.Response(200, json={"choices": [{"index": 0, "text": "", "logprobs": {"tokens": toks}}]})  # fmt: skip

        return handler

    engine(echo(0)).check_tokenizer(bb)
    with pytest.raises(EngineError, match="tokenises prompts differently.*token 1"):
        engine(echo(1)).check_tokenizer(bb)


def test_publish_loads_the_new_head_and_unloads_the_old(tmp_path):
    posts = []

    def handler(req):
        posts.append((req.url.path, json.loads(req.content)))
        return httpx.Response(200, text="Success")

    class Heads:  # what save_adapter reads from a backbone
        path = "/models/base"
        lora_specs = {"h": type("S", (), {"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": ("q_proj",)})}  # fmt: skip

        def lora_state_dict(self, name):
            return {f"m.q_proj.lora_A.{name}.weight": torch.ones(2, 3)}

    eng = HTTPEngine(URL, tmp_path, "base", transport=httpx.MockTransport(handler))
    assert eng.publish(Heads(), "h", "step0") == "h-step0"
    assert eng.publish(Heads(), "h", "step1") == "h-step1"
    assert [p for p, _ in posts] == ["/v1/load_lora_adapter", "/v1/load_lora_adapter", "/v1/unload_lora_adapter"]  # fmt: skip
    assert posts[1][1] == {"lora_name": "h-step1", "lora_path": str(tmp_path.resolve() / "h-step1")}
    assert posts[2][1] == {"lora_name": "h-step0"}
    assert not (tmp_path / "h-step0").exists() and (tmp_path / "h-step1" / "adapter_config.json").is_file()  # fmt: skip
    assert eng.served("h") == "h-step1" and eng.served(None) == "base"


def test_engine_config_errors_name_the_field(tmp_path, bb):
    from reasoning.azr.train_config import AZRTrainConfig

    with pytest.raises(ConfigError, match="rl.engine_url"):
        load_config(AZRTrainConfig, ["--rl.engine=http", "--rl.engine_url=localhost:8000"])
    with pytest.raises(ConfigError, match="rl.correction.cap"):
        load_config(AZRTrainConfig, ["--rl.correction.cap=0.5"])
    assert make_engine(EngineConfig(), tmp_path, bb) is None  # hf: the trainer samples
    cfg = EngineConfig("http", "http://127.0.0.1:9", retries=0, timeout_s=2.0)
    with pytest.raises(EngineError, match="is the engine running"):
        make_engine(cfg, tmp_path, bb)
