"""create, read, vread, update, delete over HTTP, with the headers the R4 spec asks for."""

from __future__ import annotations

import json

import httpx

FHIR_JSON = {"content-type": "application/fhir+json"}


async def create_patient(client: httpx.AsyncClient, **fields: object) -> dict:
    response = await client.post("/Patient", json={"resourceType": "Patient", **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def test_create_sets_id_meta_and_headers(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/Patient", content=b'{"resourceType":"Patient","id":"ignored","gender":"female"}', headers=FHIR_JSON
    )
    assert response.status_code == 201
    body = response.json()
    assert body["id"] != "ignored"
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["location"] == f"http://testserver/fhir/Patient/{body['id']}/_history/1"
    assert response.headers["last-modified"].endswith("GMT")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("application/fhir+json")


async def test_decimals_and_unknown_order_survive_a_round_trip(client: httpx.AsyncClient) -> None:
    body = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"weight"},'
        b'"valueQuantity":{"value":12.50,"unit":"kg"},"extension":[{"url":"http://example.org/x","valueDecimal":1.00}]}'
    )
    created = await client.post("/Observation", content=body, headers={"content-type": "application/json"})
    assert created.status_code == 201
    read = await client.get(f"/Observation/{created.json()['id']}")
    assert b'"value":12.50' in read.content
    assert b'"valueDecimal":1.00' in read.content


async def test_read_and_vread(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client, gender="male")
    pid = patient["id"]
    await client.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "gender": "female"})
    current = await client.get(f"/Patient/{pid}")
    assert current.json()["gender"] == "female"
    assert current.headers["etag"] == 'W/"2"'
    first = await client.get(f"/Patient/{pid}/_history/1")
    assert first.status_code == 200
    assert first.json()["gender"] == "male"
    assert (await client.get(f"/Patient/{pid}/_history/9")).status_code == 404
    assert (await client.get("/Patient/does-not-exist")).status_code == 404


async def test_update_as_create_with_client_id(client: httpx.AsyncClient) -> None:
    response = await client.put("/Patient/child-1", json={"resourceType": "Patient", "id": "child-1"})
    assert response.status_code == 201
    assert response.json()["id"] == "child-1"
    again = await client.put(
        "/Patient/child-1", json={"resourceType": "Patient", "id": "child-1", "active": True}
    )
    assert again.status_code == 200
    assert again.json()["meta"]["versionId"] == "2"


async def test_identical_update_makes_no_new_version(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client, gender="male")
    same = await client.put(
        f"/Patient/{patient['id']}", json={"resourceType": "Patient", "id": patient["id"], "gender": "male"}
    )
    assert same.status_code == 200
    assert same.json()["meta"]["versionId"] == "1"


async def test_if_match_version_checks(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    pid = patient["id"]
    stale = await client.put(
        f"/Patient/{pid}",
        json={"resourceType": "Patient", "id": pid, "active": False},
        headers={"If-Match": 'W/"7"'},
    )
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    ok = await client.put(
        f"/Patient/{pid}",
        json={"resourceType": "Patient", "id": pid, "active": False},
        headers={"If-Match": 'W/"1"'},
    )
    assert ok.status_code == 200
    assert ok.headers["etag"] == 'W/"2"'


async def test_delete_then_read_is_gone(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    deleted = await client.delete(f"/Patient/{patient['id']}")
    assert deleted.status_code == 204
    gone = await client.get(f"/Patient/{patient['id']}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    # deleting again, or something never created, is not an error
    assert (await client.delete(f"/Patient/{patient['id']}")).status_code == 204
    assert (await client.delete("/Patient/never-was")).status_code == 204
    # a deleted resource can be brought back by update, continuing its versions
    back = await client.put(
        f"/Patient/{patient['id']}", json={"resourceType": "Patient", "id": patient["id"]}
    )
    assert back.status_code == 201
    assert back.json()["meta"]["versionId"] == "3"


async def test_prefer_return(client: httpx.AsyncClient) -> None:
    minimal = await client.post(
        "/Patient", json={"resourceType": "Patient"}, headers={"Prefer": "return=minimal"}
    )
    assert minimal.status_code == 201
    assert minimal.content == b""
    assert minimal.headers["location"]
    outcome = await client.post(
        "/Patient", json={"resourceType": "Patient"}, headers={"Prefer": "return=OperationOutcome"}
    )
    assert outcome.json()["resourceType"] == "OperationOutcome"
    full = await client.post(
        "/Patient", json={"resourceType": "Patient"}, headers={"Prefer": "return=representation"}
    )
    assert full.json()["resourceType"] == "Patient"


async def test_summary_elements_and_pretty(client: httpx.AsyncClient) -> None:
    patient = await create_patient(
        client,
        gender="female",
        birthDate="2019-05-01",
        text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
        contact=[{"name": {"text": "Mother"}}],
    )
    pid = patient["id"]
    summary = (await client.get(f"/Patient/{pid}?_summary=true")).json()
    assert "gender" in summary and "contact" not in summary and "text" not in summary
    assert any(tag["code"] == "SUBSETTED" for tag in summary["meta"]["tag"])
    text = (await client.get(f"/Patient/{pid}?_summary=text")).json()
    assert set(text) == {"resourceType", "id", "meta", "text"}
    data = (await client.get(f"/Patient/{pid}?_summary=data")).json()
    assert "text" not in data and "contact" in data
    elements = (await client.get(f"/Patient/{pid}?_elements=birthDate")).json()
    assert set(elements) == {"resourceType", "id", "meta", "birthDate"}
    pretty = await client.get(f"/Patient/{pid}?_pretty=true")
    assert b"\n  " in pretty.content
    assert json.loads(pretty.content) == (await client.get(f"/Patient/{pid}")).json()
    bad = await client.get(f"/Patient/{pid}?_summary=maybe")
    assert bad.status_code == 400


async def test_content_negotiation(client: httpx.AsyncClient) -> None:
    patient = await create_patient(client)
    for accept in ("application/fhir+json", "application/json", "application/fhir+json, */*; q=0.1", None):
        headers = {"Accept": accept} if accept else {}
        response = await client.get(f"/Patient/{patient['id']}", headers=headers)
        assert response.status_code == 200, accept
        assert response.headers["content-type"].startswith("application/fhir+json")
    for fmt in ("json", "application/fhir+json", "application/json"):
        assert (await client.get(f"/Patient/{patient['id']}?_format={fmt}")).status_code == 200
    assert (await client.get(f"/Patient/{patient['id']}?_format=xml")).status_code == 406
    assert (
        await client.get(f"/Patient/{patient['id']}", headers={"Accept": "application/fhir+xml"})
    ).status_code == 406
    xml = await client.post(
        "/Patient", content=b"<Patient/>", headers={"content-type": "application/fhir+xml"}
    )
    assert xml.status_code == 415
