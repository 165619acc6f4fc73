"""Images in and out: seeds that do not depend on the batch, and bounded decoding of uploads.

A seeded image request gives the same pixels alone or batched with others, and image i of
`n = k` equals a request for seed + i. Uploads: only PNG, JPEG, WebP and GIF are parsed; a
JPEG is decoded at a reduced DCT scale and every image is reduced to about the pixels the
processor keeps; a request whose images would decode past `max_decode_bytes` is a 413 before
any decoding; decoding past the shared `max_decode_bytes_total` is a 429; and 64 queued
image-heavy requests stay within a stated memory bound.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from tests.serve_fixtures import block, data_url, decode_b64_png, png_bytes
from unimodal.serve import ServeConfig, create_app
from unimodal.serve.imaging import DecodeBudget, ImageDecoder
from unimodal.serve.limits import ApiError
from unimodal.serve.load import serve_in_thread

pytest_plugins = ["tests.serve_fixtures"]
GEN, CHAT = "/v1/images/generations", "/v1/chat/completions"


def encoded(size: tuple[int, int], fmt: str, color=(90, 20, 200), **kw) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt, **kw)
    return buf.getvalue()


def pixels(body: dict) -> list[np.ndarray]:
    return [np.asarray(decode_b64_png(d["b64_json"])) for d in body["data"]]


@pytest.fixture(scope="module")
def live(serve_pipe):
    cfg = ServeConfig(max_steps=2, max_n=4, default_max_tokens=1, batch_window_ms=0)
    app = create_app(serve_pipe, cfg)
    with serve_in_thread(app) as url:
        yield url, app.state.server


def test_a_seeded_image_is_the_same_alone_batched_and_as_image_i_of_n(live):
    url, state = live
    req = {"prompt": "a red circle", "seed": 5, "steps": 2}
    alone = pixels(httpx.post(url + GEN, json=req, timeout=60).json())[0]
    three = pixels(httpx.post(url + GEN, json=req | {"seed": 3, "n": 3}, timeout=60).json())
    assert np.array_equal(three[2], alone)  # image 2 of seed 3 is seed 5
    assert not np.array_equal(three[0], alone)
    worker = state.worker
    batches, release = worker.stats.batches, block(worker)
    others = [req] * 4 + [
        {"prompt": "a blue square", "seed": 9, "steps": 2},
        {"prompt": "a red circle", "seed": 4, "n": 2, "steps": 2},
    ]

    async def together():
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            tasks = [asyncio.create_task(c.post(GEN, json=r)) for r in others]
            while worker.pending() < len(others):
                await asyncio.sleep(0.02)
            release.set()
            return [pixels(r.json()) for r in await asyncio.gather(*tasks)]

    got = asyncio.run(together())
    assert worker.stats.batches == batches + 2  # the blocking job, then all six in one call
    assert all(np.array_equal(g[0], alone) for g in got[:4])
    assert np.array_equal(got[5][1], alone) and np.array_equal(got[5][0], three[1])


def test_only_png_jpeg_webp_and_gif_are_parsed(serve_pipe):
    dec = ImageDecoder(ServeConfig(), DecodeBudget(1 << 30), 12544)
    xbm = b"#define i_width 2\n#define i_height 2\nstatic char i_bits[] = {0x00, 0x00};\n"
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    for bad in (xbm, eps, encoded((8, 8), "BMP"), encoded((8, 8), "TIFF")):
        with pytest.raises(ApiError, match="not a decodable PNG, JPEG, WebP or GIF"):
            dec.decode(bad)
    frames = [Image.new("RGB", (20, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    first = dec.decode(gif.getvalue())
    assert first.size == (20, 10) and first.getpixel((0, 0))[0] > 200  # the first frame
    for fmt in ("PNG", "JPEG", "WEBP"):
        assert dec.decode(encoded((40, 30), fmt)).size == (40, 30)
    assert dec.budget.used == 0 or dec.held == dec.budget.used


def test_big_images_are_decoded_at_about_the_pixels_the_model_keeps():
    budget = DecodeBudget(1 << 30)
    dec = ImageDecoder(ServeConfig(), budget, 12544)
    start = time.perf_counter()
    small = dec.decode(encoded((4000, 3000), "JPEG"))
    assert time.perf_counter() - start < 0.5  # DCT-scaled: a 1/8 decode of 12 MP
    assert 12544 <= small.size[0] * small.size[1] <= 4 * 12544 and small.size[0] > small.size[1]
    assert dec.spent < 4000 * 3000  # what the draft decode cost, far under the full image
    png = dec.decode(png_bytes((1200, 900)))
    assert 12544 <= png.size[0] * png.size[1] <= 4 * 12544
    assert budget.used == dec.held == 3 * sum(i.size[0] * i.size[1] for i in (small, png))
    dec.release()
    assert budget.used == 0


def test_the_decoding_budgets_refuse_before_decoding(serve_pipe):
    black = encoded((4000, 4000), "PNG", (0, 0, 0))  # 46 KB that decode to 96 MB
    msg = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(black)}}] * 8}  # fmt: skip
    app = create_app(serve_pipe, ServeConfig(max_decode_bytes_total=150 << 20))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        start = time.perf_counter()
        r = c.post(CHAT, json={"messages": [msg], "max_tokens": 1})
        assert r.status_code == 413 and "max_decode_bytes" in r.json()["error"]["message"]
        assert time.perf_counter() - start < 2.0  # one 16 MP decode at most, not eight
        state = app.state.server
        assert state.budget.used == 0
        state.budget.take(100 << 20, state.cfg)  # another request is decoding a big image
        one = {"role": "user", "content": [msg["content"][0], {"type": "text", "text": "hi"}]}
        r = c.post(CHAT, json={"messages": [one], "max_tokens": 1})
        assert r.status_code == 429 and r.headers["retry-after"] == "1", r.text
        assert "max_decode_bytes_total" in r.json()["error"]["message"]
        state.budget.give(100 << 20)
        assert c.post(CHAT, json={"messages": [one], "max_tokens": 1}).status_code == 200
        assert state.budget.used == 0


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


BOUND_MB = 400  # stated bound for 64 queued requests of 8 JPEGs of 12 MP (1.5 MB of upload each)


def test_memory_stays_bounded_while_64_image_heavy_requests_are_queued(live):
    url, state = live
    photo = data_url(encoded((4000, 3000), "JPEG"), "image/jpeg")
    parts = [{"type": "image_url", "image_url": {"url": photo}}] * 8
    msg = {"role": "user", "content": [*parts, {"type": "text", "text": "hi"}]}
    raw = json.dumps({"messages": [msg], "max_tokens": 1}).encode()  # one copy for 64 sends
    headers = {"content-type": "application/json"}
    worker, before = state.worker, rss_mb()
    release = block(worker)

    async def queued():
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            post = lambda: c.post(CHAT, content=raw, headers=headers)  # noqa: E731
            tasks = [asyncio.create_task(post()) for _ in range(64)]
            while worker.pending() < 64:
                await asyncio.sleep(0.05)
            grown, held = rss_mb() - before, state.budget.used
            release.set()
            return grown, held, [r.status_code for r in await asyncio.gather(*tasks)]

    grown, held, statuses = asyncio.run(queued())
    mb = len(raw) / 2**20
    print(
        f"\n64 queued x 8 JPEGs of 12 MP ({mb:.1f} MB each): RSS +{grown:.0f} MB, images {held >> 20} MB"
    )
    assert statuses == [200] * 64
    assert grown < BOUND_MB and held <= state.cfg.max_decode_bytes_total
    assert held < 64 * 8 * 4 * 12544 * 3  # only reduced images stay held while queued
    assert state.budget.used == 0


def test_generated_images_round_trip_as_base64(live):
    url, _ = live
    body = httpx.post(url + GEN, json={"prompt": "a", "steps": 1}, timeout=60).json()
    assert Image.open(io.BytesIO(base64.b64decode(body["data"][0]["b64_json"]))).size == (32, 32)


def test_generator_seeds_give_each_row_its_own_noise(serve_pipe):
    gen = serve_pipe.generator
    one = gen.generate(["a red circle"], steps=1, seed=5)
    assert torch.equal(gen.generate(["a red circle"], steps=1, seeds=[5]), one)  # as before
    rows = gen.generate(["a blue square", "a red circle", "a red circle"], steps=1, seeds=[1, 5, 6])
    assert torch.allclose(rows[1], one[0], atol=1e-4) and not torch.allclose(rows[2], one[0])
    with pytest.raises(ValueError, match="seeds"):
        gen.generate(["a", "b"], steps=1, seeds=[1])
