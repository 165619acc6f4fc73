"""Fuzzing the served OpenAPI schema with schemathesis: no input gives a 5xx or kills the app.

Each operation of /openapi.json gets valid-by-schema and invalid-by-schema cases (hypothesis,
derandomized, a fixed number of examples). schemathesis's pytest loader (`from_fixture`) does
not work under pytest 9, so the test drives `APIOperation.as_strategy` itself. schemathesis
never generates lone surrogates (they cannot be UTF-8 encoded), so a second test puts one into
a string (or key) of each valid JSON body it generates: JSON carries them as "\ud800" escapes.
(sent as JSON text by a test client: schemathesis's own client cannot carry them). Its ASGI client sends `Host: testserver`, which the loopback Host check is told to accept.
"""

from __future__ import annotations

import json

import pytest

schemathesis = pytest.importorskip("schemathesis")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode, checks  # noqa: E402

from unimodal.serve import ServeConfig, create_app  # noqa: E402

pytest_plugins = ["tests.serve_fixtures"]

# Small limits keep every accepted request cheap: few steps, tokens and images.
CFG = ServeConfig(
    max_steps=2,
    max_n=2,
    max_tokens=4,
    default_max_tokens=4,
    max_images_per_chat=2,
    allowed_hosts="testserver",
)
OPERATIONS = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/images/generations"),
    ("POST", "/v1/images/edits"),
    ("GET", "/health"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model}"),
    ("POST", "/v1/load_lora_adapter"),  # off here (no lora_dir): a 403 or a 400, never a 5xx
    ("POST", "/v1/unload_lora_adapter"),
]
JSON_BODIES = [p for m, p in OPERATIONS if m == "POST" and not p.endswith("edits")]
SURROGATES = st.characters(categories=["Cs"])  # one, so never a valid pair
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_app(serve_pipe):
    return create_app(serve_pipe, CFG)


@pytest.fixture(scope="module")
def api_schema(fuzz_app):
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


def test_the_schema_lists_every_operation(api_schema):
    found = {(r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if m == "POST"
]  # a GET has no invalid form (no parameters, or a path string that takes any text)


@pytest.mark.parametrize("method,path,mode", CASES)
def test_no_input_gets_a_5xx(api_schema, method, path, mode):
    operation = api_schema[path][method]
    statuses = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=25 if method == "POST" or "{" in path else 3,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        response = case.call()
        statuses.append(response.status_code)
        assert response.status_code < 500, response.text
        case.validate_response(response, checks=CHECKS)

    check()
    print(method, path, mode, sorted(statuses))
    assert statuses and all(s < 500 for s in statuses)


def _strings(value, path=()):
    """Paths to every string of a JSON value; ("key", path) for a key of a dict."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield ("key", (*path, k))
            yield from _strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))


def _poison(body, where, bad: str):
    """`body` with a lone surrogate inserted into the string (or key) at `where`."""
    if where and where[0] == "key":
        *up, key = where[1]
        parent = body
        for k in up:
            parent = parent[k]
        parent[key[:1] + bad + key[1:]] = parent.pop(key)
        return body
    if not where:
        return body[:1] + bad + body[1:]
    parent = body
    for k in where[:-1]:
        parent = parent[k]
    parent[where[-1]] = parent[where[-1]][:1] + bad + parent[where[-1]][1:]
    return body


@pytest.fixture(scope="module")
def raw_client(fuzz_app):
    with TestClient(fuzz_app, base_url="http://127.0.0.1") as c:
        yield c


@pytest.mark.parametrize("path", JSON_BODIES)
def test_invalid_unicode_in_any_field_gets_a_400(api_schema, raw_client, path):
    operation = api_schema[path]["POST"]
    seen = []

    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE), data=st.data())
    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case, data):
        leaves = list(_strings(case.body))
        if not leaves:
            return
        where = data.draw(st.sampled_from(leaves))
        body = _poison(case.body, where, data.draw(SURROGATES))
        raw = json.dumps(body).encode()  # ASCII: a surrogate travels as a \ud800 escape
        response = raw_client.post(path, content=raw, headers={"content-type": "application/json"})
        seen.append(where)
        assert response.status_code == 400, response.text
        assert "not valid Unicode" in response.json()["error"]["message"]

    check()
    assert len(seen) >= 10


def test_the_fuzzed_app_is_still_healthy(fuzz_app):
    with TestClient(fuzz_app, base_url="http://127.0.0.1") as c:
        body = c.get("/health").json()
        assert body["status"] == "ok" and body["stats"]["failed"] == 0
        assert c.post("/v1/images/generations", json={"prompt": "a red circle"}).status_code == 200
