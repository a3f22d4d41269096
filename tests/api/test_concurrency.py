"""Concurrent writers never lose an update: If-Match turns races into clean 412s."""

from __future__ import annotations

import asyncio

import httpx


async def test_concurrent_if_match_updates_lose_nothing(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Basic", json={"resourceType": "Basic", "code": {"text": "0"}})).json()["id"]
    conflicts = 0

    async def increment(times: int) -> None:
        nonlocal conflicts
        done = 0
        while done < times:
            current = await client.get(f"/Basic/{pid}")
            value = int(current.json()["code"]["text"])
            body = {"resourceType": "Basic", "id": pid, "code": {"text": str(value + 1)}}
            response = await client.put(
                f"/Basic/{pid}", json=body, headers={"If-Match": current.headers["etag"]}
            )
            if response.status_code == 412:
                conflicts += 1
                continue
            assert response.status_code == 200, response.text
            done += 1

    await asyncio.gather(*(increment(10) for _ in range(8)))
    final = (await client.get(f"/Basic/{pid}")).json()
    assert final["code"]["text"] == "80"
    assert final["meta"]["versionId"] == "81"
    history = (await client.get(f"/Basic/{pid}/_history?_count=1")).json()
    assert history["total"] == 81
    assert conflicts > 0  # the writers really did race
