"""Input limits (docs/limits.md): each refused early, with auth off and on, by an OperationOutcome with
the right status, and nothing stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from fhir_server import fhirjson
from tests.hostile.conftest import Api
from tests.hostile.test_known_500s import assert_refused


def _nested_extensions(levels: int) -> dict[str, Any]:
    """A Patient whose JSON nests 2 * levels + 2 deep (each extension is an array and an object)."""
    ext: dict[str, Any] = {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(levels - 1):
        ext = {"url": "http://example.org/node", "extension": [ext]}
    return {"resourceType": "Patient", "extension": [ext]}


async def _count(api: Api) -> int:
    reply = await api.request("GET", "Patient?_summary=count")
    assert reply.status_code == 200, reply.text
    return int(reply.json()["total"])


async def test_body_over_the_limit_by_content_length_and_streamed(api: Api) -> None:
    api.app.state.settings.max_body_bytes = 2_000
    before = await _count(api)
    big = orjson.dumps({"resourceType": "Patient", "name": [{"family": "x" * 3_000}]})
    reply = assert_refused(await api.request("POST", "Patient", content=big), 413)
    assert "2000 bytes" in reply["issue"][0]["diagnostics"]

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(big), 500):
            yield big[start : start + 500]

    reply = await api.http.post("Patient", content=streamed(), headers=api._headers(None))
    assert "content-length" not in reply.request.headers
    assert_refused(reply, 413)
    for method, url in (("PUT", "Patient/p1"), ("POST", ""), ("POST", "Patient/$validate")):
        assert_refused(await api.request(method, url, content=big), 413)
    assert await _count(api) == before


async def test_json_nested_deeper_than_the_limit(api: Api) -> None:
    limit = api.app.state.settings.max_json_depth
    at_limit = orjson.dumps(_nested_extensions((limit - 2) // 2))
    assert fhirjson.nesting_depth(at_limit) <= limit
    reply = await api.request("POST", "Patient", content=at_limit)
    assert reply.status_code in (201, 422), reply.text  # within the limit: validated like any other body
    too_deep = orjson.dumps(_nested_extensions(limit))
    assert fhirjson.nesting_depth(too_deep) > limit
    before = await _count(api)
    for method, url in (("POST", "Patient"), ("PUT", "Patient/p1"), ("POST", "Patient/$validate")):
        outcome = assert_refused(await api.request(method, url, content=too_deep), 400)
        assert f"limit of {limit} levels" in outcome["issue"][0]["diagnostics"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": orjson.loads(too_deep), "request": {"method": "POST", "url": "Patient"}}],
    }
    assert_refused(await api.request("POST", "", json=bundle), 400)
    patch = [{"op": "add", "path": "/extension", "value": orjson.loads(too_deep)["extension"]}]
    headers = {"Content-Type": "application/json-patch+json"}
    assert_refused(
        await api.request("PATCH", f"Patient/{await api.patient()}", json=patch, headers=headers), 400
    )
    assert await _count(api) == before + 1  # only api.patient()


async def test_patches_cannot_nest_a_resource_deeper_than_a_body_may(api: Api) -> None:
    """Each patch is shallow, but they add up: the patched result is held to the same limit."""
    limit = api.app.state.settings.max_json_depth
    pid = await api.patient()
    headers = {"Content-Type": "application/json-patch+json"}
    value: Any = {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(limit // 8):
        value = {"url": "http://example.org/node", "extension": [value]}
    path, status = "/extension", 200
    for _ in range(10):
        reply = await api.request(
            "PATCH", f"Patient/{pid}", json=[{"op": "add", "path": path, "value": [value]}], headers=headers
        )
        status = reply.status_code
        if status != 200:
            break
        path += "/0/extension/0/extension/0/extension/0/extension/0/extension"
    assert_refused(reply, 400)
    assert status == 400
    stored = await api.request("GET", f"Patient/{pid}")
    assert fhirjson.nesting_depth(stored.content) <= limit


async def test_bundle_with_more_entries_than_the_limit(api: Api) -> None:
    api.app.state.settings.max_bundle_entries = 3
    entry = {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}
    before = await _count(api)
    for kind in ("transaction", "batch"):
        bundle = {"resourceType": "Bundle", "type": kind, "entry": [entry] * 4}
        outcome = assert_refused(await api.request("POST", "", json=bundle), 413)
        assert outcome["issue"][0]["expression"] == ["Bundle.entry"]
    assert await _count(api) == before


async def test_url_and_query_over_their_limits(api: Api) -> None:
    settings = api.app.state.settings
    settings.max_query_length, settings.max_url_length = 1_000, 1_500
    assert_refused(await api.request("GET", "Patient?name=" + "a" * 1_000), 414)
    assert_refused(await api.request("GET", "Patient/" + "a" * 1_500), 414)
    assert (await api.request("GET", "Patient?name=" + "a" * 900)).status_code == 200


async def test_headers_over_the_limit(api: Api) -> None:
    api.app.state.settings.max_header_bytes = 4_000
    reply = await api.request("GET", "Patient", headers={"X-Padding": "a" * 4_000})
    assert_refused(reply, 431)
    assert reply.headers["connection"] == "close"


@pytest.mark.parametrize("header", ["If-Match", "If-None-Match"])
async def test_etag_headers_over_the_limit(api: Api, header: str) -> None:
    limit = api.app.state.settings.max_etag_length
    pid = await api.patient()
    long_etag = 'W/"' + "1" * limit + '"'
    body = {"resourceType": "Patient", "id": pid, "active": True}
    outcome = assert_refused(
        await api.request("PUT", f"Patient/{pid}", json=body, headers={header: long_etag}), 400
    )
    assert outcome["issue"][0]["expression"] == [header]
    assert (await api.request("GET", f"Patient/{pid}")).json()["meta"]["versionId"] == "1"


async def test_a_body_that_stops_arriving_times_out(api: Api) -> None:
    api.app.state.settings.body_read_timeout = 0.3
    stalled = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b'{"resourceType": "Patient", '
        await stalled.wait()  # never set: the rest never comes
        yield b"}"

    reply = await asyncio.wait_for(api.http.post("Patient", content=stalls(), headers=api._headers(None)), 30)
    assert_refused(reply, 408)
    assert reply.headers["connection"] == "close"
