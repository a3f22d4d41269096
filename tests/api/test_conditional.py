"""Conditional create, update and delete, as the R4 specification defines their outcomes."""

from __future__ import annotations

import httpx

CID = "https://terms.sil-th.org/id/th-cid"


def child(cid: str, **fields: object) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": CID, "value": cid}], **fields}


async def test_if_none_exist(client: httpx.AsyncClient) -> None:
    first = await client.post("/Patient", json=child("1"), headers={"If-None-Exist": f"identifier={CID}|1"})
    assert first.status_code == 201
    again = await client.post("/Patient", json=child("1"), headers={"If-None-Exist": f"identifier={CID}|1"})
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    await client.post("/Patient", json=child("1"))
    ambiguous = await client.post(
        "/Patient", json=child("1"), headers={"If-None-Exist": f"identifier={CID}|1"}
    )
    assert ambiguous.status_code == 412


async def test_conditional_update_creates_then_updates(client: httpx.AsyncClient) -> None:
    created = await client.put(f"/Patient?identifier={CID}|2", json=child("2", gender="male"))
    assert created.status_code == 201
    pid = created.json()["id"]
    updated = await client.put(f"/Patient?identifier={CID}|2", json=child("2", gender="female"))
    assert updated.status_code == 200
    assert updated.json()["id"] == pid and updated.json()["meta"]["versionId"] == "2"
    wrong_id = await client.put(f"/Patient?identifier={CID}|2", json={**child("2"), "id": "someone-else"})
    assert wrong_id.status_code == 400
    await client.post("/Patient", json=child("2"))
    assert (await client.put(f"/Patient?identifier={CID}|2", json=child("2"))).status_code == 412


async def test_conditional_update_with_an_id_that_exists_elsewhere_conflicts(
    client: httpx.AsyncClient,
) -> None:
    await client.put("/Patient/taken", json={"resourceType": "Patient", "id": "taken"})
    response = await client.put(f"/Patient?identifier={CID}|9", json={**child("9"), "id": "taken"})
    assert response.status_code == 409
    fresh = await client.put(f"/Patient?identifier={CID}|9", json={**child("9"), "id": "new-child"})
    assert fresh.status_code == 201 and fresh.json()["id"] == "new-child"


async def test_conditional_delete_single_and_multiple(client: httpx.AsyncClient) -> None:
    for cid in ("3", "4", "4", "4", "4", "4"):
        await client.post("/Patient", json=child(cid, active=True))
    one = await client.delete(f"/Patient?identifier={CID}|3")
    assert one.status_code == 204
    assert (await client.get(f"/Patient?identifier={CID}|3")).json().get("total", 0) == 0
    many = await client.delete(f"/Patient?identifier={CID}|4", headers={"Prefer": "return=OperationOutcome"})
    assert many.status_code == 200
    assert "Deleted 5" in many.json()["issue"][0]["diagnostics"]
    remaining = (await client.get("/Patient?active=true&_total=accurate")).json()
    assert remaining["total"] == 0
    none = await client.delete(f"/Patient?identifier={CID}|5")
    assert none.status_code == 204


async def test_conditional_requests_need_criteria(client: httpx.AsyncClient) -> None:
    assert (await client.put("/Patient", json=child("1"))).status_code == 400
    assert (await client.delete("/Patient")).status_code == 400
