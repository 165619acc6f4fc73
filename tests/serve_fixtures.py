"""Shared by the server tests: a tiny model that chats, draws and edits, trained once.

Test modules load the fixtures with `pytest_plugins = ["tests.serve_fixtures"]` (registered
once per run, so the session fixtures train once) and import the helpers directly.
PYTEST_DONT_REWRITE (imported before pytest registers it as a plugin; plain asserts suffice).
"""

from __future__ import annotations

import base64
import io
import threading
from pathlib import Path

import pytest
from PIL import Image

from unimodal.serve.worker import Job, Worker


def _train(backbone_dir: Path, out: Path) -> Path:
    from tools.train_gen import CONFIG, main
    from unimodal.config import load_config

    args = [
        f"--model.path={backbone_dir}",
        f"--train.out_dir={out}",
        "--train.steps=1",
        "--train.batch_size=2",
        "--sample.every=0",
        "--eval.n_per_category=0",
        "--eval.edit_n=0",
        "--gen.edit=true",
        "--data.edit_fraction=0.5",
        "--gen.sampler.steps=2",
    ]
    main(load_config(CONFIG, args))
    return out / "final"


@pytest.fixture(scope="session")
def serve_model_dir(tiny_backbone_dir, tmp_path_factory) -> Path:
    return _train(tiny_backbone_dir, tmp_path_factory.mktemp("serve") / "gen")


@pytest.fixture(scope="session")
def serve_pipe(serve_model_dir):
    from unimodal.pipeline import Pipeline

    return Pipeline.from_pretrained(serve_model_dir, device="cpu")


def png_bytes(size: tuple[int, int] = (40, 30), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def decode_b64_png(text: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(text)))
    assert img.format == "PNG"
    return img.convert("RGB")


def block(worker: Worker) -> threading.Event:
    """Occupy `worker` until the returned event is set (so later jobs wait in its queue)."""
    release, running = threading.Event(), threading.Event()

    def hold(payloads: list) -> list:
        running.set()
        release.wait(30)
        return [None]

    worker.submit(Job(None, hold))
    assert running.wait(10), "the worker did not pick up the blocking job"
    return release
