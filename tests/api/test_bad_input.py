"""Every failure is an OperationOutcome with the right status, and changes nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings, running_app


async def history_total(client: httpx.AsyncClient) -> int:
    return (await client.get("/_history")).json().get("total", 0)


def assert_outcome(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] == "error"
    return body


async def test_rejected_requests_change_nothing(client: httpx.AsyncClient) -> None:
    created = await client.post("/Patient", json={"resourceType": "Patient", "gender": "male"})
    pid = created.json()["id"]
    before = await history_total(client)
    assert_outcome(await client.post("/Patient", content=b'{"resourceType": "Patient",'), 400)
    assert_outcome(await client.post("/Patient", json={"gender": "male"}), 400)
    assert_outcome(await client.post("/Patient", json={"resourceType": "Observation"}), 400)
    assert_outcome(await client.post("/Patient", json=["not", "an", "object"]), 400)
    mismatch = assert_outcome(
        await client.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": "other"}), 400
    )
    assert mismatch["issue"][0]["expression"] == ["id"]
    assert_outcome(await client.put(f"/Patient/{pid}", json={"resourceType": "Patient"}), 400)
    invalid = assert_outcome(
        await client.post("/Patient", json={"resourceType": "Patient", "birthDate": "2020-13-45"}), 422
    )
    assert any("Patient.birthDate" in issue.get("expression", []) for issue in invalid["issue"])
    assert_outcome(await client.post("/Patient", json={"resourceType": "Patient", "colour": "blue"}), 422)
    assert await history_total(client) == before
    assert (await client.get(f"/Patient/{pid}")).json()["gender"] == "male"


async def test_unknown_type_and_endpoint_are_404(client: httpx.AsyncClient) -> None:
    assert_outcome(await client.get("/Unicorn/1"), 404)
    assert_outcome(await client.post("/Unicorn", json={"resourceType": "Unicorn"}), 404)
    assert_outcome(await client.get("/Patient/1/_history/1/extra"), 404)


async def test_unsupported_method_is_405(client: httpx.AsyncClient) -> None:
    response = await client.request("POST", "/Patient/1")
    assert_outcome(response, 405)
    assert "PUT" in response.headers["allow"]
    assert_outcome(await client.delete("/metadata"), 405)


async def test_unsupported_media_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/Patient", content=b"name=x", headers={"content-type": "text/plain"})
    assert_outcome(response, 415)


@pytest.fixture
async def small_body_client(tmp_path: Path):
    async with running_app(make_settings(tmp_path, max_body_bytes=200)) as (_, http):
        yield http


async def test_body_over_limit_is_413(small_body_client: httpx.AsyncClient) -> None:
    big = {"resourceType": "Patient", "name": [{"text": "x" * 500}]}
    assert_outcome(await small_body_client.post("/Patient", json=big), 413)
    assert (await small_body_client.get("/Patient/_history")).json()["total"] == 0


async def test_empty_body_is_400(client: httpx.AsyncClient) -> None:
    assert_outcome(
        await client.post("/Patient", content=b"", headers={"content-type": "application/fhir+json"}), 400
    )
