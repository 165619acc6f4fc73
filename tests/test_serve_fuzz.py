"""Fuzzing the served OpenAPI schema with schemathesis: no input gives a 5xx or kills the app.

Each operation of /openapi.json gets valid-by-schema and invalid-by-schema cases (hypothesis,
derandomized, a fixed number of examples). schemathesis's pytest loader (`from_fixture`) does
not work under pytest 9, so the test drives `APIOperation.as_strategy` itself.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis import GenerationMode, checks  # noqa: E402

from unimodal.serve import ServeConfig, create_app  # noqa: E402

pytest_plugins = ["tests.serve_fixtures"]

# Small limits keep every accepted request cheap: few steps, tokens and images.
CFG = ServeConfig(max_steps=2, max_n=2, max_tokens=4, default_max_tokens=4, max_images_per_chat=2)
OPERATIONS = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/images/generations"),
    ("POST", "/v1/images/edits"),
    ("GET", "/health"),
    ("GET", "/v1/models"),
]
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
]  # a GET without parameters has no invalid form


@pytest.mark.parametrize("method,path,mode", CASES)
def test_no_input_gets_a_5xx(api_schema, method, path, mode):
    operation = api_schema[path][method]
    statuses = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=25 if method == "POST" else 3,
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


def test_the_fuzzed_app_is_still_healthy(fuzz_app):
    with TestClient(fuzz_app) as c:
        body = c.get("/health").json()
        assert body["status"] == "ok" and body["stats"]["failed"] == 0
        assert c.post("/v1/images/generations", json={"prompt": "a red circle"}).status_code == 200
