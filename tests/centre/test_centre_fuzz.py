"""Property-based fuzzing of the kit API from its own OpenAPI document (schemathesis + hypothesis): never a 5xx.

Every operation gets generated paths, headers and bodies, with a valid kit token (so the requests reach the tus,
roster and heartbeat code, not only the auth check) and without one. Refusals must be the documented JSON.
"""

from __future__ import annotations

import json

import schemathesis
from hypothesis import HealthCheck, given, settings

UVICORN_400 = b"Invalid HTTP request received."


@schemathesis.serializer("application/offset+octet-stream")
def _octets(_ctx, value) -> bytes:  # a tus PATCH body: raw bytes
    return value if isinstance(value, bytes) else str(value).encode()


def _operations(url: str) -> list:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(op, headers: dict[str, str], examples: int) -> None:
    @given(case=op.as_strategy())
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case) -> None:
        response = case.call(headers=headers, timeout=30)
        where = f"{case.method} {case.formatted_path}"
        assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
        if response.content == UVICORN_400:  # malformed HTTP itself (a header h11 refuses): never reaches the app
            return
        if response.status_code >= 400 and case.method.upper() != "HEAD":
            assert response.headers.get("content-type") == ["application/json"], \
                f"{where}: {response.status_code} {response.headers} {response.content[:300]!r}"
            assert set(json.loads(response.content)) == {"error", "detail"}, f"{where}: {response.content[:300]!r}"

    run()


def test_no_5xx_with_a_token(centre, kit):
    _, token = kit
    ops = _operations(centre.url)
    assert len(ops) >= 9
    for op in ops:
        _fuzz(op, {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}, 25)


def test_no_5xx_without_a_token(centre):
    for op in _operations(centre.url):
        _fuzz(op, {}, 10)
