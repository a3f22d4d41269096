"""History at instance, type and system level with _since, _at, _count and paging."""

from __future__ import annotations

import asyncio

import httpx


async def test_instance_history_across_create_update_delete(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json={"resourceType": "Patient", "gender": "male"})).json()["id"]
    await client.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "gender": "female"})
    await client.delete(f"/Patient/{pid}")
    bundle = (await client.get(f"/Patient/{pid}/_history")).json()
    assert bundle["type"] == "history"
    assert bundle["total"] == 3
    methods = [entry["request"]["method"] for entry in bundle["entry"]]
    assert methods == ["DELETE", "PUT", "POST"]
    assert "resource" not in bundle["entry"][0]
    assert bundle["entry"][1]["resource"]["gender"] == "female"
    assert bundle["entry"][2]["response"]["etag"] == 'W/"1"'
    assert bundle["entry"][0]["response"]["status"].startswith("204")


async def test_type_and_system_history_with_paging(client: httpx.AsyncClient) -> None:
    ids = []
    for n in range(5):
        ids.append(
            (
                await client.post(
                    "/Observation",
                    json={"resourceType": "Observation", "status": "final", "code": {"text": f"o{n}"}},
                )
            ).json()["id"]
        )
    await client.post("/Patient", json={"resourceType": "Patient"})
    page = (await client.get("/Observation/_history?_count=2")).json()
    assert page["total"] == 5
    seen = [e["resource"]["id"] for e in page["entry"]]
    while next_link := next((link["url"] for link in page["link"] if link["relation"] == "next"), None):
        page = (await client.get(next_link)).json()
        seen += [e["resource"]["id"] for e in page["entry"]]
    assert seen == list(reversed(ids))
    system = (await client.get("/_history?_count=1")).json()
    assert system["entry"][0]["resource"]["resourceType"] == "Patient"


async def test_since_and_at(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json={"resourceType": "Patient", "gender": "male"})).json()["id"]
    await asyncio.sleep(0.01)
    second = await client.put(
        f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "gender": "female"}
    )
    moment = second.json()["meta"]["lastUpdated"]
    await asyncio.sleep(0.01)
    await client.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "gender": "other"})
    since = (await client.get(f"/Patient/{pid}/_history", params={"_since": moment})).json()
    assert [e["resource"]["gender"] for e in since["entry"]] == ["other", "female"]
    at = (await client.get(f"/Patient/{pid}/_history", params={"_at": moment})).json()
    assert [e["resource"]["gender"] for e in at["entry"]] == ["female"]
    bad = await client.get(f"/Patient/{pid}/_history?_since=yesterday")
    assert bad.status_code == 400


async def test_history_of_unknown_resource_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/Patient/nobody/_history")).status_code == 404
