"""`--rl.engine=http`: tools/train_azr.py and tools/train_rm.py sample their rollouts from this
project's server on loopback, hot-load the head after every update, and correct the engine's
log-probs; the trained heads then go into one model folder and are served as model ids.

Each hot-load is checked where it matters: right after it, the server scores a probe prompt
with the new adapter exactly as the trainer's head does, and differently from the version
before (so the engine really samples from the current policy).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
import torch

from reasoning.pg.http_engine import HTTPEngine
from tests.test_azr_train import _scripted_generate
from tests.test_rm_train import _tool as rm_tool
from tests.test_serve_heads import add_heads_tool, head_scores, random_head
from unimodal.backbone import Backbone
from unimodal.config import load_config
from unimodal.serve import ServeConfig, create_app
from unimodal.serve.load import serve_in_thread

PROBE = "def f(x):\n    return x + 1"


@pytest.fixture(scope="module")
def engine_server(tiny_backbone_dir, tmp_path_factory):
    """(url, server state, lora root): the tiny backbone served with hot-loading on."""
    from unimodal.pipeline import Pipeline

    lora = tmp_path_factory.mktemp("engine_lora")
    pipe = Pipeline.from_pretrained(tiny_backbone_dir, device="cpu")
    cfg = ServeConfig(lora_dir=str(lora), max_tokens=64, default_max_tokens=16, max_queue=256)
    app = create_app(pipe, cfg)
    with serve_in_thread(app) as url:
        yield url, app.state.server, lora


def spy_publish(monkeypatch, url: str) -> list[dict]:
    """Record, after each hot-load, the served and the trainer's log-probs of PROBE."""
    seen: list[dict] = []
    real = HTTPEngine.publish

    def publish(self, backbone, head, tag, main=True):
        name = real(self, backbone, head, tag, main)
        if main:
            ids = backbone.tokenizer(PROBE)["input_ids"]
            body = {"model": name, "prompt": ids, "max_tokens": 0, "echo": True, "logprobs": 0}
            lp = httpx.post(url + "/v1/completions", json=body).json()["choices"][0]["logprobs"]
            with torch.no_grad():
                mine = head_scores(backbone, head, ids)
            seen.append({"tag": tag, "served": lp["token_logprobs"][1:], "trainer": mine})
        return name

    monkeypatch.setattr(HTTPEngine, "publish", publish)
    return seen


def check_hot_loads(seen: list[dict], n_steps: int) -> None:
    assert [s["tag"] for s in seen] == [f"step{i}" for i in range(n_steps + 1)]
    for s in seen:
        assert s["served"] == pytest.approx(s["trainer"], abs=1e-4)  # the engine serves the head
    for before, after in zip(seen, seen[1:]):
        assert max(abs(a - b) for a, b in zip(before["served"], after["served"])) > 1e-6


def rows(out) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def azr_run(tiny_backbone_dir, engine_server, tmp_path_factory):
    import reasoning.azr.selfplay as selfplay
    import tools.train_azr as T

    url, state, lora = engine_server
    out = tmp_path_factory.mktemp("azr_http") / "run"
    mp = pytest.MonkeyPatch()
    seen = spy_publish(mp, url)
    mp.setattr(selfplay, "generate", _scripted_generate(selfplay.generate))  # half well-formed
    args = [f"--model.path={tiny_backbone_dir}", f"--train.out_dir={out}", "--azr.references=1"]
    args += ["--azr.max_new_tokens=12", "--rl.engine=http", f"--rl.engine_url={url}"]
    args += [f"--rl.lora_dir={lora / 'azr'}", "--rl.request_batch=4", "--rl.concurrency=2"]
    try:
        T.main(load_config(T.CONFIG, args))
    finally:
        mp.undo()
    return out, seen, dict(state.adapters)


def test_train_azr_two_steps_on_the_http_engine(azr_run):
    out, seen, adapters = azr_run
    check_hot_loads(seen, 2)
    got = rows(out)
    assert [r["step"] for r in got] == [1, 2]
    for r in got:
        assert r["pg/is_mismatch"] < 1e-3 and r["pg/is_capped"] == 0.0 and r["pg/grad_norm"] > 0
        assert r["deduction/propose/valid_rate"] == 0.5  # the engine's half is random text
    assert list(adapters) == ["azr-step2"]  # older versions were unloaded from the server
    folder = Path(adapters["azr-step2"])
    assert [p.name for p in folder.parent.iterdir()] == ["azr-step2"]  # ... and from the disk


@pytest.fixture(scope="module")
def rm_run(tiny_backbone_dir, engine_server, tmp_path_factory):
    from reasoning.rm_r1.judge import HeadSpec, save_head

    url, state, lora = engine_server
    tmp = tmp_path_factory.mktemp("rm_http")
    bb = Backbone.from_pretrained(tiny_backbone_dir).freeze()
    random_head(bb, "judge", 8, 3)  # an "SFT" head unlike the base: the k3 KL moves it
    save_head(bb, HeadSpec("judge", 8, 16, style="distilled"), tmp / "sft")
    tool, mp = rm_tool(), pytest.MonkeyPatch()
    seen = spy_publish(mp, url)
    args = ["--config", "rm_tiny", f"--model.path={tiny_backbone_dir}", "--stage=rl"]
    args += [f"--rl.init={tmp / 'sft'}", f"--rl.train.out_dir={tmp / 'rl'}", "--rl.train.steps=2"]
    args += ["--rl.max_new_tokens=12", "--data.n_procedural=16", "--eval.n=2"]
    args += ["--eval.max_new_tokens=8", "--rl.engine=http", f"--rl.engine_url={url}"]
    args += [f"--rl.lora_dir={lora / 'rm'}", "--rl.correction.mode=sequence-mask"]
    try:
        tool.main(load_config(tool.CONFIG, args), Backbone.from_pretrained(tiny_backbone_dir))
    finally:
        mp.undo()
    return tmp / "rl", seen


def test_train_rm_two_steps_on_the_http_engine(rm_run):
    out, seen = rm_run
    check_hot_loads(seen, 2)
    got = rows(out)
    assert [r["step"] for r in got] == [1, 2]
    for r in got:
        assert r["is_mismatch"] < 1e-3 and r["is_kept"] == 1.0 and "kl" in r
        assert -1 <= r["reward"] <= 1
    assert (out / "final" / "judge_lora.safetensors").is_file()


def test_trained_heads_in_one_model_folder(tiny_backbone_dir, azr_run, rm_run, tmp_path):
    from unimodal.pipeline import Pipeline

    model = tmp_path / "model"
    shutil.copytree(tiny_backbone_dir, model)
    add_heads_tool().main(model, [("azr", azr_run[0]), ("judge", rm_run[0] / "final")])
    pipe = Pipeline.from_pretrained(model, device="cpu")
    assert sorted(pipe.heads) == ["azr", "judge"] and pipe.heads["judge"]["style"] == "distilled"
    from reasoning.azr.head import load_head

    ref = Backbone.from_pretrained(tiny_backbone_dir).freeze()
    name = load_head(ref, azr_run[0])
    ids = ref.tokenizer(PROBE)["input_ids"]
    assert head_scores(pipe.backbone, "azr", ids) == pytest.approx(head_scores(ref, name, ids), abs=1e-5)  # fmt: skip
    cfg = ServeConfig(max_tokens=8, default_max_tokens=8)
    from fastapi.testclient import TestClient

    with TestClient(create_app(pipe, cfg), base_url="http://127.0.0.1") as c:
        assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["unimodal", "unimodal:azr", "unimodal:judge"]  # fmt: skip
