"""Transaction and batch bundles POSTed to the base."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import SHARED, make_settings, running_app

SYNTHEA = sorted((SHARED / "testdata" / "synthea" / "R4").glob("*.json"))


def hl7_example(name: str) -> dict[str, Any]:
    with tarfile.open(SHARED / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz") as archive:
        return orjson.loads(archive.extractfile(f"package/{name}").read())  # type: ignore[union-attr]


def transaction(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict[str, Any], full_url: str | None = None, **request: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for v in node.values() for r in references(v)]
    if isinstance(node, list):
        return [r for v in node for r in references(v)]
    return []


async def all_of(client: httpx.AsyncClient, resource_type: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    url: str | None = f"/{resource_type}?_count=500"
    while url:
        page = (await client.get(url)).json()
        out += [e["resource"] for e in page.get("entry", []) if e.get("search", {}).get("mode") == "match"]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    return out


@pytest.mark.slow
async def test_all_synthea_bundles_load_and_every_reference_resolves(client: httpx.AsyncClient) -> None:
    expected: Counter[str] = Counter()
    urls_in_bundles: set[str] = set()
    for path in SYNTHEA:
        bundle = orjson.loads(path.read_bytes())
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if entry["request"].get("ifNoneExist"):
                urls_in_bundles.add(entry["request"]["ifNoneExist"])
            expected[resource["resourceType"]] += 1
        response = await client.post(
            "", content=path.read_bytes(), headers={"content-type": "application/fhir+json"}
        )
        assert response.status_code == 200, (path.name, response.text[:500])
        assert response.json()["type"] == "transaction-response"
        assert all(e["response"]["status"].startswith(("200", "201")) for e in response.json()["entry"])
    for resource_type in ("Patient", "Encounter", "Condition", "Claim"):
        stored = await all_of(client, resource_type)
        assert len(stored) == expected[resource_type], resource_type
    for resource_type in ("Encounter", "Claim", "ExplanationOfBenefit", "DiagnosticReport"):
        for resource in await all_of(client, resource_type):
            for reference in references(resource):
                assert not reference.startswith("urn:uuid:"), reference
                if "?" in reference or reference.startswith("#"):
                    continue
                assert (await client.get(f"/{reference}")).status_code == 200, reference


async def test_hl7_transaction_example(client: httpx.AsyncClient) -> None:
    bundle = hl7_example("Bundle-bundle-transaction.json")
    # The example assumes existing data: Patient/123a at version 2 and Patient/12334.
    for _ in range(2):
        await client.put("/Patient/123a", json={"resourceType": "Patient", "id": "123a", "active": _ == 1})
    await client.put("/Patient/12334", json={"resourceType": "Patient", "id": "12334"})
    # Its entry 7 posts to "ValueSet/$lookup", which is not an R4 operation: the whole transaction fails.
    failed = await client.post("", json=bundle)
    assert failed.status_code in (400, 404)
    assert "Bundle.entry[7]" in failed.text
    bundle["entry"] = [e for e in bundle["entry"] if "$" not in e["request"]["url"]]
    response = await client.post("", json=bundle)
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses[0].startswith("201") and statuses[2].startswith("201")
    assert statuses[4].startswith("200")  # PUT Patient/123a with ifMatch W/"2"
    assert statuses[5].startswith("204")
    assert statuses[-1].startswith("200")  # GET Patient/12334 (not modified since 2015? it was: 200)
    assert (await client.get("/Patient/123")).status_code == 200


async def test_hl7_example_with_urls_of_another_server_is_refused(client: httpx.AsyncClient) -> None:
    # Bundle-ussg-fht PUTs to absolute URLs under http://hl7.org/fhir/us/sdc/: not this server.
    response = await client.post("", json=hl7_example("Bundle-ussg-fht.json"))
    assert response.status_code == 400
    assert "Bundle.entry[0]" in response.text and "another server" in response.text


@pytest.mark.parametrize("name", ["Bundle-hla-1.json", "Bundle-xds.json"])
async def test_other_hl7_transactions_load(client: httpx.AsyncClient, name: str) -> None:
    bundle = hl7_example(name)
    response = await client.post("", json=bundle)
    assert response.status_code == 200, response.text[:1000]
    assert len(response.json()["entry"]) == len(bundle["entry"])


@pytest.mark.parametrize(
    "name", ["Bundle-bundle-request-medsallergies.json", "Bundle-bundle-request-simplesummary.json"]
)
async def test_hl7_batch_of_reads(client: httpx.AsyncClient, name: str) -> None:
    response = await client.post("", json=hl7_example(name))
    assert response.status_code == 200
    assert response.json()["type"] == "batch-response"
    assert all("status" in e["response"] for e in response.json()["entry"])


async def test_references_rewritten_everywhere(client: httpx.AsyncClient) -> None:
    patient_url = "urn:uuid:11111111-1111-1111-1111-111111111111"
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "w"},
        "subject": {"reference": patient_url},
        "extension": [
            {"url": "http://example.org/about", "valueReference": {"reference": patient_url}},
            {"url": "http://example.org/provenance", "valueReference": {"reference": "#p"}},
        ],
        "contained": [
            {
                "resourceType": "Provenance",
                "id": "p",
                "recorded": "2024-01-01T00:00:00Z",
                "target": [{"reference": patient_url}],
                "agent": [{"who": {"reference": patient_url}}],
            }
        ],
        "valueQuantity": {"value": 3.50, "unit": "kg"},
    }
    bundle = transaction(
        post(observation, "urn:uuid:22222222-2222-2222-2222-222222222222"),
        post({"resourceType": "Patient"}, patient_url),
    )
    raw = orjson.dumps(bundle).replace(b'"value":3.5', b'"value":3.50')
    response = await client.post("", content=raw, headers={"content-type": "application/fhir+json"})
    assert response.status_code == 200, response.text
    location = response.json()["entry"][0]["response"]["location"]
    patient_location = response.json()["entry"][1]["response"]["location"]
    patient_ref = "/".join(patient_location.split("/")[:2])
    stored = await client.get("/" + location.split("/_history")[0])
    assert "urn:uuid" not in stored.text
    assert set(references(stored.json())) == {patient_ref, "#p"}
    assert b'"value":3.50' in stored.content


async def test_conditional_references_and_idempotent_conditional_creates(client: httpx.AsyncClient) -> None:
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:cid", "value": "1"}]}
    organization = {
        "resourceType": "Organization",
        "identifier": [{"system": "urn:hcode", "value": "41234"}],
        "name": "Health centre",
    }
    for _ in range(2):
        bundle = transaction(
            post(
                patient, "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001", ifNoneExist="identifier=urn:cid|1"
            ),
            post(
                organization,
                "urn:uuid:aaaaaaaa-0000-0000-0000-000000000002",
                ifNoneExist="identifier=urn:hcode|41234",
            ),
        )
        assert (await client.post("", json=bundle)).status_code == 200
    assert len(await all_of(client, "Patient")) == 1
    assert len(await all_of(client, "Organization")) == 1
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient?identifier=urn:cid|1"},
        "serviceProvider": {"reference": "Organization?identifier=urn:hcode|41234"},
    }
    response = await client.post("", json=transaction(post(encounter)))
    assert response.status_code == 200, response.text
    stored = await all_of(client, "Encounter")
    assert stored[0]["subject"]["reference"].startswith("Patient/")
    missing = dict(encounter, subject={"reference": "Patient?identifier=urn:cid|999"})
    failed = await client.post("", json=transaction(post(missing)))
    assert failed.status_code in (404, 412)
    assert "matches 0" in failed.text


async def test_patch_and_get_entries_run_inside_the_transaction(client: httpx.AsyncClient) -> None:
    await client.put("/Patient/p1", json={"resourceType": "Patient", "id": "p1", "gender": "male"})
    json_patch = base64.b64encode(
        orjson.dumps([{"op": "replace", "path": "/gender", "value": "female"}])
    ).decode()
    bundle = transaction(
        {
            "resource": {
                "resourceType": "Binary",
                "contentType": "application/json-patch+json",
                "data": json_patch,
            },
            "request": {"method": "PATCH", "url": "Patient/p1"},
        },
        {
            "resource": {
                "resourceType": "Parameters",
                "parameter": [
                    {
                        "name": "operation",
                        "part": [
                            {"name": "type", "valueCode": "add"},
                            {"name": "path", "valueString": "Patient"},
                            {"name": "name", "valueString": "birthDate"},
                            {"name": "value", "valueDate": "2020-01-01"},
                        ],
                    }
                ],
            },
            "request": {"method": "PATCH", "url": "Patient/p1"},
        },
        {"request": {"method": "GET", "url": "Patient/p1"}},
    )
    response = await client.post("", json=bundle, headers={"Prefer": "return=representation"})
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert entries[2]["resource"]["gender"] == "female"
    assert entries[2]["resource"]["birthDate"] == "2020-01-01"


async def test_batch_entries_succeed_and_fail_independently(client: httpx.AsyncClient) -> None:
    bundle = transaction(
        post({"resourceType": "Patient", "gender": "male"}),
        post({"resourceType": "Patient", "gender": "robot"}),
        {"request": {"method": "GET", "url": "Patient/nobody"}},
        kind="batch",
    )
    response = await client.post("/", json=bundle)
    assert response.status_code == 200
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"].startswith("201")
    assert entries[1]["response"]["status"].startswith("422")
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[2]["response"]["status"].startswith("404")
    assert len(await all_of(client, "Patient")) == 1


async def snapshot(store: Any) -> tuple[list[tuple], list[str]]:
    """Every stored version, byte for byte, and (on SQLite) the whole database dump."""
    versions = [
        (r.resource_type, r.id, r.version, r.method, r.last_updated, r.body)
        async for r in store.iterate_history()
    ]
    database: list[str] = []
    if store.url.startswith("sqlite:///"):
        conn = sqlite3.connect(store.url.removeprefix("sqlite:///"))
        try:
            database = list(conn.iterdump())
        finally:
            conn.close()
    return versions, database


async def test_failed_transaction_leaves_the_store_byte_for_byte_unchanged(tmp_path: Path) -> None:
    async with running_app(make_settings(tmp_path)) as (app, client):
        await client.put("/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
        before = await snapshot(app.state.store)
        bundle = transaction(
            post({"resourceType": "Patient"}),
            {
                "resource": {"resourceType": "Patient", "id": "p1", "active": True},
                "request": {"method": "PUT", "url": "Patient/p1"},
            },
            {"request": {"method": "DELETE", "url": "Patient/p1"}},
            post({"resourceType": "Observation", "status": "not-a-status", "code": {"text": "x"}}),
        )
        response = await client.post("", json=bundle)
        assert response.status_code == 422
        assert "Bundle.entry[3]" in response.json()["issue"][0]["diagnostics"]
        assert await snapshot(app.state.store) == before


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"resourceType": "Patient"}, "resourceType"),
        (transaction({"resource": {"resourceType": "Patient"}}), "Bundle.entry[0]"),
        (
            transaction(
                post(
                    {
                        "resourceType": "Encounter",
                        "status": "planned",
                        "class": {"code": "AMB"},
                        "subject": {"reference": "urn:uuid:00000000-0000-0000-0000-000000000009"},
                    }
                )
            ),
            "Bundle.entry[0]",
        ),
        (
            transaction(
                post({"resourceType": "Patient"}, "urn:uuid:00000000-0000-0000-0000-000000000001"),
                post({"resourceType": "Patient"}, "urn:uuid:00000000-0000-0000-0000-000000000001"),
            ),
            "Bundle.entry[1]",
        ),
        (
            transaction(
                {
                    "resource": {"resourceType": "Patient"},
                    "request": {"method": "POST", "url": "https://elsewhere.example/fhir/Patient"},
                }
            ),
            "Bundle.entry[0]",
        ),
        (
            transaction(post({"resourceType": "Bundle", "type": "transaction", "entry": []})),
            "Bundle.entry[0]",
        ),
        ({"resourceType": "Bundle", "type": "collection", "entry": []}, "Bundle.type"),
    ],
    ids=[
        "not-a-bundle",
        "no-request",
        "dangling-urn",
        "duplicate-fullUrl",
        "other-server",
        "nested",
        "collection",
    ],
)
async def test_bad_bundles_are_400_and_write_nothing(
    client: httpx.AsyncClient, body: dict, where: str
) -> None:
    response = await client.post("", json=body)
    assert response.status_code == 400, response.text
    assert where in response.text
    assert (await client.get("/Patient/_history")).json()["total"] == 0


async def test_other_bundle_types_are_stored_at_bundle_endpoint(client: httpx.AsyncClient) -> None:
    document = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:00000000-0000-0000-0000-000000000001",
                "resource": {"resourceType": "Patient"},
            }
        ],
    }
    response = await client.post("/Bundle", json=document)
    assert response.status_code == 201
    assert response.json()["type"] == "collection"


async def test_entry_limit_is_413(tmp_path: Path) -> None:
    async with running_app(make_settings(tmp_path, max_bundle_entries=2)) as (_, client):
        bundle = transaction(*(post({"resourceType": "Patient"}) for _ in range(3)))
        assert (await client.post("", json=bundle)).status_code == 413


async def test_concurrent_transactions_never_lose_an_update(client: httpx.AsyncClient) -> None:
    await client.put("/Basic/shared", json={"resourceType": "Basic", "id": "shared", "code": {"text": "0"}})

    async def bump() -> int:
        while True:
            current = await client.get("/Basic/shared")
            value = int(current.json()["code"]["text"]) + 1
            bundle = transaction(
                {
                    "resource": {"resourceType": "Basic", "id": "shared", "code": {"text": str(value)}},
                    "request": {"method": "PUT", "url": "Basic/shared", "ifMatch": current.headers["etag"]},
                },
                post({"resourceType": "Basic", "code": {"text": f"log {value}"}}),
            )
            response = await client.post("", json=bundle)
            if response.status_code == 412:
                continue
            assert response.status_code == 200, response.text
            return value

    results = await asyncio.wait_for(asyncio.gather(*(bump() for _ in range(12))), timeout=120)
    assert sorted(results) == list(range(1, 13))
    assert (await client.get("/Basic/shared")).json()["code"]["text"] == "12"
    assert len(await all_of(client, "Basic")) == 13
