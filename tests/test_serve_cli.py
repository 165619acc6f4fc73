"""The command-line tools: tools/serve.py as a real process, tools/serve_load.py in-process."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import httpx
import pytest

from unimodal.config import ConfigError, load_config
from unimodal.serve import ServeConfig, create_app
from unimodal.serve.load import serve_in_thread

pytest_plugins = ["tests.serve_fixtures"]
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_tool_starts_answers_and_stops(serve_model_dir):
    port = free_port()
    cmd = [sys.executable, "tools/serve.py", "--model", str(serve_model_dir), "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--default_max_tokens=4", "--device=cpu"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the server did not come up"
            try:
                if httpx.get(url + "/health", timeout=2).json()["status"] == "ok":
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        chat = {"messages": [{"role": "user", "content": "hi"}]}
        r = httpx.post(url + "/v1/chat/completions", json=chat, timeout=30)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 4
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
    assert f"on http://127.0.0.1:{port}/" in out


def test_serve_tool_refuses_bad_settings(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import serve as serve_tool
    finally:
        sys.path.remove(str(ROOT / "tools"))
    with pytest.raises(ConfigError, match="max_n"):
        load_config(ServeConfig, ["--max_n=0"])
    with pytest.raises(ConfigError, match="unknown config key 'max_nn'"):
        load_config(ServeConfig, ["--max_nn=3"])
    with pytest.raises(SystemExit, match="--model DIR is required"):
        serve_tool.main(ServeConfig())
    with pytest.raises(SystemExit, match="cannot load"):
        serve_tool.main(ServeConfig(model=str(tmp_path / "missing")))


def test_serve_load_tool_prints_a_json_report(serve_pipe, capsys):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import serve_load
    finally:
        sys.path.remove(str(ROOT / "tools"))
    with serve_in_thread(create_app(serve_pipe, ServeConfig(default_max_tokens=2))) as url:
        serve_load.main(serve_load.LoadConfig(url=url, clients=4, requests=16))
    report = json.loads(capsys.readouterr().out)
    assert report["bench"] == "serve_load" and report["statuses"] == {"200": 16}
    assert report["requests_per_s"] > 0 and report["p95_ms"] >= report["p50_ms"] > 0


def test_serve_tool_help_lists_every_option():
    out = subprocess.run(
        [sys.executable, "tools/serve.py", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    for field in fields(ServeConfig):
        assert f"--{field.name}=" in out.stdout
    assert "Authorization: Bearer" in out.stdout and "UNIMODAL_API_KEY" in out.stdout
