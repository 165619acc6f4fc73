"""Who may talk to the server: the API key, the Host check, cross-site posts, CORS, headers."""

from __future__ import annotations

import hmac

import pytest
from fastapi.testclient import TestClient

from tests.serve_fixtures import png_bytes
from unimodal.serve import ServeConfig, create_app

pytest_plugins = ["tests.serve_fixtures"]
LOCAL = "http://127.0.0.1:8000"
CHAT, EDIT = "/v1/chat/completions", "/v1/images/edits"
HI = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def client(pipe, **cfg) -> TestClient:
    return TestClient(create_app(pipe, ServeConfig(**cfg)), base_url=LOCAL)


def test_the_api_key_guards_every_v1_route(serve_pipe, monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    with client(serve_pipe, api_key="s3cret") as c:
        for method, path in [("GET", "/v1/models"), ("GET", "/v1/models/unimodal"), ("POST", CHAT),
                             ("POST", "/v1/completions"), ("POST", "/v1/images/generations")]:  # fmt: skip
            for auth in (None, "Bearer wrong", "Basic s3cret", "Bearer s3cre", "Bearer s3cretx"):
                headers = {"Authorization": auth} if auth else {}
                r = c.request(method, path, headers=headers, json=HI)
                assert r.status_code == 401, (path, auth, r.text)
                assert r.json()["error"]["type"] == "authentication_error"
                assert r.headers["www-authenticate"] == "Bearer"
        ok = {"Authorization": "Bearer s3cret"}
        assert c.get("/v1/models", headers=ok).status_code == 200
        assert c.post(CHAT, json=HI, headers=ok).status_code == 200
        health = c.get("/health").json()  # the page learns that it must send a key
        assert health["status"] == "ok" and health["api_key_required"] is True
        assert c.get("/").status_code == 200
        r = c.get("/v1/models", headers={"Authorization": "Bearer s3cr\u00e9t".encode()})
        assert r.status_code == 401  # non-ASCII is compared as bytes, no 5xx
    assert calls  # the comparison is hmac's constant-time one
    monkeypatch.setenv("UNIMODAL_API_KEY", "from-env")
    with client(serve_pipe) as c:
        assert c.get("/v1/models").status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Bearer from-env"}).status_code == 200


@pytest.mark.parametrize(
    "host,status",
    [("127.0.0.1:8000", 200), ("localhost", 200), ("[::1]:9", 200), ("LOCALHOST:1", 200),
     ("evil.example", 400), ("evil.example:8000", 400), ("127.0.0.1.evil.example", 400),
     ("", 400), ("[::1", 400)],
)  # fmt: skip
def test_on_loopback_only_loopback_host_headers_are_served(serve_pipe, host, status):
    with client(serve_pipe) as c:
        r = c.get("/health", headers={"host": host})
        assert r.status_code == status, r.text
        if status == 400:
            assert "Host header" in r.json()["error"]["message"]


def test_allowed_hosts_and_a_public_bind(serve_pipe):
    with client(serve_pipe, allowed_hosts="box.lan") as c:
        assert c.get("/health", headers={"host": "box.lan:8000"}).status_code == 200
        assert c.get("/health", headers={"host": "other.lan"}).status_code == 400
    with client(serve_pipe, host="0.0.0.0") as c:  # not loopback: any name may reach it
        assert c.get("/health", headers={"host": "box.lan"}).status_code == 200


def test_cross_site_posts_are_refused(serve_pipe):
    form = {"image": ("a.png", png_bytes(), "image/png")}
    with client(serve_pipe) as c:
        for headers in (
            {"origin": "https://evil.example"},
            {"origin": "null"},
            {"origin": "http://127.0.0.1:9999"},  # another port is another origin
            {"sec-fetch-site": "cross-site"},
        ):
            r = c.post(EDIT, files=form, data={"prompt": "blue"}, headers=headers)
            assert r.status_code == 403 and "cross-site" in r.json()["error"]["message"], r.text
            assert c.post(CHAT, json=HI, headers=headers).status_code == 403
        same = {"origin": LOCAL, "sec-fetch-site": "same-origin"}
        assert c.post(CHAT, json=HI, headers=same).status_code == 200
        assert c.post(CHAT, json=HI).status_code == 200  # no Origin: not a browser form
        assert c.get("/health", headers={"origin": "https://evil.example"}).status_code == 200


def test_cors_only_for_allowed_origins(serve_pipe):
    evil = {"origin": "https://evil.example"}
    with client(serve_pipe) as c:
        r = c.get("/v1/models", headers=evil)
        assert "access-control-allow-origin" not in r.headers
        pre = {**evil, "access-control-request-method": "POST"}
        assert "access-control-allow-origin" not in c.options(CHAT, headers=pre).headers
    with client(serve_pipe, allowed_origins="https://app.example") as c:
        app = {"origin": "https://app.example"}
        r = c.options(CHAT, headers={**app, "access-control-request-method": "POST"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = c.post(CHAT, json=HI, headers=app)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert c.post(CHAT, json=HI, headers=evil).status_code == 403


def test_the_page_has_security_headers_and_the_docs_use_no_cdn(serve_pipe):
    with client(serve_pipe) as c:
        page = c.get("/")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert c.get("/v1/models").headers["x-content-type-options"] == "nosniff"
        docs = c.get("/docs")
        assert docs.status_code == 200 and "/openapi.json" in docs.text
        assert "cdn" in docs.text.lower() and "<script" not in docs.text
        assert c.get("/redoc").status_code == 404
        assert "/openapi.json" in c.get("/nope").json()["error"]["message"]
