"""One model folder, every head: heads in MODEL/heads/ (tools/add_heads.py), `Pipeline` chat
and judge with a head, images and base chat untouched by heads, the server's per-head model
ids, and hot-loading adapters through /v1/load_lora_adapter (vLLM's shape)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file, save_file

from reasoning.rm_r1.judge import HeadSpec, judge, save_head, with_judge
from unimodal.adapters import save_adapter
from unimodal.backbone import Backbone, Prompt
from unimodal.serve import ServeConfig, create_app

pytest_plugins = ["tests.serve_fixtures"]
ROOT = Path(__file__).resolve().parents[1]
HELLO = [{"role": "user", "content": "hello there"}]


def add_heads_tool():
    spec = importlib.util.spec_from_file_location("add_heads", ROOT / "tools" / "add_heads.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["add_heads"] = mod
    spec.loader.exec_module(mod)
    return mod


def random_head(bb: Backbone, name: str, r: int, seed: int) -> None:
    bb.add_lora(name, r, 2 * r)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in bb.lora_parameters(name):
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


@pytest.fixture(scope="module")
def sources(tiny_backbone_dir, tmp_path_factory):
    """An AZR-like head as a PEFT adapter folder and a judge head folder (random weights)."""
    out = tmp_path_factory.mktemp("heads")
    bb = Backbone.from_pretrained(tiny_backbone_dir).freeze()
    random_head(bb, "azr", 4, 0)
    random_head(bb, "judge", 2, 1)
    save_adapter(bb, "azr", out / "azr_adapter")
    save_head(bb, HeadSpec("judge", 2, 4, style="distilled"), out / "judge_head")
    random_head(bb, "other", 4, 2)
    save_adapter(bb, "other", out / "lora" / "other")
    return out


@pytest.fixture(scope="module")
def model_dir(serve_model_dir, sources, tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "final"
    shutil.copytree(serve_model_dir, model)
    tool = add_heads_tool()
    tool.main(model, [("azr", sources / "azr_adapter"), ("judge", sources / "judge_head")])
    return model


@pytest.fixture(scope="module")
def pipe(model_dir):
    from unimodal.pipeline import Pipeline

    return Pipeline.from_pretrained(model_dir, device="cpu")


def test_heads_never_change_images_or_the_base_chat(pipe, serve_pipe):
    assert sorted(pipe.heads) == ["azr", "judge"] and pipe.heads["judge"]["style"] == "distilled"
    assert pipe.backbone.active_lora is None
    ref_img = np.asarray(serve_pipe.generate("a red circle", seed=3, steps=2)[0])
    ref_chat = serve_pipe.chat(HELLO, max_new_tokens=8)
    assert pipe.chat(HELLO, max_new_tokens=8) == ref_chat
    head_chat = pipe.chat(HELLO, max_new_tokens=8, head="azr")
    assert head_chat != ref_chat  # the head does answer differently
    assert "".join(pipe.chat(HELLO, max_new_tokens=8, head="azr", stream=True)) == head_chat
    assert pipe.backbone.active_lora is None
    assert np.array_equal(np.asarray(pipe.generate("a red circle", seed=3, steps=2)[0]), ref_img)
    pipe.backbone.set_lora("judge")  # even a head left on does not reach the generator
    try:
        assert np.array_equal(
            np.asarray(pipe.generate("a red circle", seed=3, steps=2)[0]), ref_img
        )
        src = serve_pipe.generate("a blue square", seed=1, steps=2)[0]
        edited = pipe.edit(src, "make it red", steps=2, seed=5)[0]
    finally:
        pipe.backbone.set_lora(None)
    assert np.array_equal(np.asarray(edited), np.asarray(serve_pipe.edit(src, "make it red", steps=2, seed=5)[0]))  # fmt: skip
    assert pipe.chat(HELLO, max_new_tokens=8) == ref_chat


def test_pipe_judge_is_the_judge_api(pipe):
    with pytest.raises(ValueError, match="no judge format"):
        pipe.judge("What is 2 + 3?", "5", "6")
    with_judge(pipe)
    got = pipe.judge("What is 2 + 3?", "5", "6", max_new_tokens=12)
    want = judge(pipe.backbone, "What is 2 + 3?", "5", "6", "judge", "distilled", 12)
    assert got == want and isinstance(got.reasoning, str) and got.reasoning
    with pytest.raises(ValueError, match="no head 'nope'"):
        pipe.judge("q", "a", "b", head="nope")
    pipe.judge_format = None


@pytest.fixture(scope="module")
def client(pipe, sources):
    cfg = ServeConfig(
        max_tokens=16, default_max_tokens=8, lora_dir=str(sources / "lora"), max_loras=1
    )
    with TestClient(create_app(pipe, cfg), base_url="http://127.0.0.1") as c:
        yield c


def chat(client, model: str, status: int = 200) -> str:
    r = client.post("/v1/chat/completions", json={"model": model, "messages": HELLO, "max_tokens": 8, "temperature": 0})  # fmt: skip
    assert r.status_code == status, r.text
    return r.json()["choices"][0]["message"]["content"] if status == 200 else r.json()["error"]["message"]  # fmt: skip


def scores(client, model: str, ids: list[int]) -> list[float]:
    body = {"model": model, "prompt": ids, "max_tokens": 0, "echo": True, "logprobs": 0}
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["logprobs"]["token_logprobs"][1:]


def head_scores(bb: Backbone, head: str | None, ids: list[int]) -> list[float]:
    with bb.lora(head):
        lp, _ = bb.token_logprobs(Prompt(torch.tensor([ids]), torch.ones(1, len(ids)), {}))
    return lp[0].tolist()


def test_every_head_is_its_own_model_id(client, pipe):
    data = client.get("/v1/models").json()["data"]
    assert [m["id"] for m in data] == ["unimodal", "unimodal:azr", "unimodal:judge"]
    assert [m["parent"] for m in data] == [None, "unimodal", "unimodal"]
    assert "images.generations" not in data[2]["capabilities"]
    assert client.get("/v1/models/unimodal:judge").json()["id"] == "unimodal:judge"
    assert client.get("/v1/models/unimodal:nope").status_code == 404
    assert chat(client, "unimodal") == pipe.chat(HELLO, max_new_tokens=8)
    assert chat(client, "unimodal:judge") == pipe.chat(HELLO, max_new_tokens=8, head="judge")
    assert chat(client, "unimodal:azr") == pipe.chat(HELLO, max_new_tokens=8, head="azr")
    assert "unknown model 'unimodal:nope'" in chat(client, "unimodal:nope", 404)
    ids = pipe.backbone.tokenizer("count to three")["input_ids"]
    assert scores(client, "unimodal:azr", ids) == pytest.approx(head_scores(pipe.backbone, "azr", ids), abs=1e-4)  # fmt: skip
    r = client.post("/v1/images/generations", json={"prompt": "a red circle", "model": "unimodal:azr"})  # fmt: skip
    assert r.status_code == 404  # heads are text-only
    assert client.post("/v1/images/generations", json={"prompt": "a red circle", "steps": 1}).status_code == 200  # fmt: skip


def post(client, path: str, **body):
    return client.post(path, json=body)


def test_hot_loading_adapters(client, pipe, sources):
    load, unload = "/v1/load_lora_adapter", "/v1/unload_lora_adapter"
    ids = pipe.backbone.tokenizer("count to three")["input_ids"]
    base = scores(client, "unimodal", ids)
    folder = str(sources / "lora" / "other")
    bad = [
        ({"lora_name": "a.b", "lora_path": folder}, 400, "lora_name"),
        ({"lora_name": "judge", "lora_path": folder}, 400, "head of the model folder"),
        (
            {"lora_name": "x", "lora_path": str(sources / "azr_adapter")},
            400,
            "inside the server's lora_dir",
        ),  # fmt: skip
        ({"lora_name": "x", "lora_path": str(sources / "lora")}, 400, "holds no adapter"),
        ({"lora_name": "x"}, 400, "lora_path"),
    ]
    for body, status, fragment in bad:
        r = client.post(load, json=body)
        assert r.status_code == status and fragment in r.json()["error"]["message"], r.text
    r = post(client, load, lora_name="other", lora_path=folder)
    assert r.status_code == 200 and r.text.startswith("Success")
    listed = client.get("/v1/models").json()["data"][-1]
    assert listed["id"] == "other" and listed["parent"] == "unimodal" and listed["root"] == str(Path(folder).resolve())  # fmt: skip
    served = scores(client, "other", ids)
    assert served != pytest.approx(base, abs=1e-3)
    assert scores(client, "unimodal:other", ids) == served
    assert "already been loaded" in post(client, load, lora_name="other", lora_path=folder).text
    assert "max_loras" in post(client, load, lora_name="second", lora_path=folder).text
    # overwrite in place with other weights: the served outputs change again
    src = Path(folder) / "adapter_model.safetensors"
    state = {k: v * 2 for k, v in load_file(str(src)).items()}
    twice = Path(folder).parent / "twice"
    shutil.copytree(folder, twice, dirs_exist_ok=True)
    save_file(state, str(twice / "adapter_model.safetensors"))
    assert post(client, load, lora_name="other", lora_path=str(twice), load_inplace=True).status_code == 200  # fmt: skip
    assert scores(client, "other", ids) != pytest.approx(served, abs=1e-3)
    assert post(client, unload, lora_name="other").status_code == 200
    assert "unknown model 'other'" in chat(client, "other", 404)
    assert post(client, unload, lora_name="other").status_code == 404
    assert post(client, unload, lora_name="azr").status_code == 400  # a head of the folder
    assert scores(client, "unimodal", ids) == base
    assert pipe.backbone.lora_names == ["azr", "judge"]


def test_loading_is_off_without_lora_dir(serve_pipe, sources):
    with TestClient(create_app(serve_pipe, ServeConfig()), base_url="http://127.0.0.1") as c:
        r = post(
            c, "/v1/load_lora_adapter", lora_name="x", lora_path=str(sources / "lora" / "other")
        )
        assert r.status_code == 403 and "--lora_dir" in r.json()["error"]["message"]


def test_add_heads_refuses_a_head_that_does_not_fit(model_dir, sources, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(sources / "azr_adapter", bad)
    state = load_file(str(bad / "adapter_model.safetensors"))
    k = next(iter(state))
    state[k.replace("layers.0", "layers.99")] = state.pop(k)
    save_file(state, str(bad / "adapter_model.safetensors"))
    tool = add_heads_tool()
    with pytest.raises(SystemExit, match="does not fit"):
        tool.main(model_dir, [("broken", bad)])
    with pytest.raises(FileNotFoundError, match="not an AZR run"):
        tool.main(model_dir, [("x", tmp_path)])
    with pytest.raises(SystemExit):
        tool.parse(["--model", str(model_dir), "--head", "a.b=somewhere"])
    assert not (model_dir / "heads" / "broken").exists()
