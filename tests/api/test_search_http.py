"""Search over HTTP: GET/POST, system and compartment search, links, paging while writing, errors."""

from __future__ import annotations

from typing import Any

import httpx

BASE = "http://testserver/fhir"


async def _put(client: httpx.AsyncClient, resource: dict[str, Any]) -> None:
    r = await client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text


async def _seed(client: httpx.AsyncClient) -> None:
    await _put(client, {"resourceType": "Organization", "id": "org1", "name": "Bang Rak Health Centre"})
    for i in range(12):
        await _put(
            client,
            {
                "resourceType": "Patient",
                "id": f"p{i}",
                "gender": "female" if i % 2 else "male",
                "birthDate": f"2015-01-{i + 1:02d}",
                "name": [{"family": f"Fam{i:02d}"}],
                "managingOrganization": {"reference": "Organization/org1"},
            },
        )
    for i in range(3):
        await _put(
            client,
            {
                "resourceType": "Observation",
                "id": f"o{i}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                "subject": {"reference": f"Patient/p{i}"},
                "valueQuantity": {"value": 10 + i, "system": "http://unitsofmeasure.org", "code": "kg"},
            },
        )


def _ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


async def test_type_search_bundle_shape(client: httpx.AsyncClient) -> None:
    await _seed(client)
    r = await client.get("/Patient", params={"gender": "female", "_sort": "birthdate", "nonsense": "1"})
    assert r.status_code == 200
    bundle = r.json()
    assert bundle["type"] == "searchset" and bundle["total"] == 6
    assert _ids(bundle) == ["p1", "p3", "p5", "p7", "p9", "p11"]
    entry = bundle["entry"][0]
    assert entry["fullUrl"] == f"{BASE}/Patient/p1"
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert (
        self_link.startswith(f"{BASE}/Patient?")
        and "nonsense" not in self_link
        and "gender=female" in self_link
    )


async def test_post_search_and_system_search(client: httpx.AsyncClient) -> None:
    await _seed(client)
    r = await client.post("/Patient/_search", data={"family": "fam03"})
    assert r.status_code == 200 and _ids(r.json()) == ["p3"]
    r = await client.get("", params={"_type": "Patient,Organization", "_id": "p2,org1"})
    assert r.status_code == 200 and sorted(_ids(r.json())) == ["org1", "p2"]


async def test_chain_has_include_compartment(client: httpx.AsyncClient) -> None:
    await _seed(client)
    r = await client.get(
        "/Observation", params={"subject:Patient.family": "fam01", "_include": "Observation:subject"}
    )
    bundle = r.json()
    assert _ids(bundle) == ["o1"] and _ids(bundle, "include") == ["p1"]
    r = await client.get(
        "/Patient",
        params={"_has:Observation:patient:value-quantity": "gt11", "_include": "Patient:organization"},
    )
    bundle = r.json()
    assert _ids(bundle) == ["p2"] and _ids(bundle, "include") == ["org1"]
    r = await client.get("/Patient/p0/Observation")
    assert r.status_code == 200 and _ids(r.json()) == ["o0"]


async def test_summary_count_elements(client: httpx.AsyncClient) -> None:
    await _seed(client)
    r = await client.get("/Patient", params={"_summary": "count"})
    bundle = r.json()
    assert bundle["total"] == 12 and "entry" not in bundle
    r = await client.get("/Patient", params={"_elements": "gender", "_id": "p1"})
    resource = r.json()["entry"][0]["resource"]
    assert "gender" in resource and "name" not in resource
    assert any(t["code"] == "SUBSETTED" for t in resource["meta"]["tag"])


async def test_paging_with_writes_between_pages(client: httpx.AsyncClient) -> None:
    await _seed(client)
    r = await client.get("/Patient", params={"_count": "5", "_sort": "family"})
    bundle = r.json()
    seen = _ids(bundle)
    # another client writes: one patient sorting before the current position, one after
    await _put(client, {"resourceType": "Patient", "id": "early", "name": [{"family": "Aaa"}]})
    await _put(client, {"resourceType": "Patient", "id": "late", "name": [{"family": "Zzz"}]})
    while nxt := next((x["url"] for x in bundle["link"] if x["relation"] == "next"), None):
        assert nxt.startswith(BASE)
        bundle = (await client.get(nxt)).json()
        seen.extend(_ids(bundle))
    assert len(seen) == len(set(seen)) == 13
    assert "late" in seen and "early" not in seen
    prev = next(x["url"] for x in bundle["link"] if x["relation"] == "previous")
    assert _ids((await client.get(prev)).json()) == ["p5", "p6", "p7", "p8", "p9"]


async def test_conditional_create_uses_search(client: httpx.AsyncClient) -> None:
    await _seed(client)
    patient = {"resourceType": "Patient", "name": [{"family": "Fam03"}]}
    r = await client.post("/Patient", json=patient, headers={"If-None-Exist": "family:exact=Fam03"})
    assert r.status_code == 200  # found p3, nothing created
    r = await client.post("/Patient", json=patient, headers={"If-None-Exist": "family=fam0"})
    assert r.status_code == 412  # several match
    r = await client.get("/Patient", params={"_summary": "count"})
    assert r.json()["total"] == 12


async def test_bad_input(client: httpx.AsyncClient) -> None:
    for params in (
        {"birthdate": "2023-13-45"},
        {"_count": "abc"},
        {"name:unknownmod": "x"},
        {"gender.name": "x"},
    ):
        r = await client.get("/Patient", params=params)
        assert r.status_code == 400, params
        outcome = r.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["expression"] == [next(iter(params))]
    r = await client.get("/Patient", params={"nonsense": "1"}, headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    r = await client.get("/Patient", params={"_count": "100000"})
    assert r.status_code == 200
    outcome = [e for e in r.json().get("entry", []) if e["search"]["mode"] == "outcome"]
    assert outcome and "exceeds" in outcome[0]["resource"]["issue"][0]["diagnostics"]
