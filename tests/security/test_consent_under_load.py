"""Cached consent decisions are never stale: a withdrawal counts for every request sent after its answer,
however many requests are in flight while it happens."""

from __future__ import annotations

import asyncio
import time

from tests.security import scene
from tests.security.conftest import World


async def test_withdrawal_under_concurrent_reads_is_never_served_stale(world: World) -> None:
    s = await scene.build(world)
    growth = f"Observation/{s.ids['child1-growth']}"
    assert (await s.school.get(growth)).status_code == 200  # consented: the cached view grants it
    consent = (await s.hospital.get(f"Consent/{s.ids['consent']}")).json()
    withdrawn_at: float | None = None
    seen: list[tuple[float, int, str]] = []  # (sent at, status, what)
    stop = asyncio.Event()

    async def reader(n: int) -> None:
        while not stop.is_set():
            sent = time.monotonic()
            if n % 2:
                reply = await s.school.get(growth)
                seen.append((sent, reply.status_code, "read"))
            else:
                reply = await s.school.get("Observation?subject=Patient/child1&_summary=count")
                seen.append((sent, 200 if reply.json()["total"] else 404, "search"))

    async def withdraw() -> None:
        nonlocal withdrawn_at
        await asyncio.sleep(0.3)  # the readers are in full flow
        consent["status"] = "inactive"
        reply = await s.hospital.put(f"Consent/{consent['id']}", consent)
        assert reply.status_code == 200, reply.text
        withdrawn_at = time.monotonic()
        await asyncio.sleep(0.5)  # and keep reading after it
        stop.set()

    await asyncio.gather(withdraw(), *(reader(n) for n in range(8)))
    assert withdrawn_at is not None
    before = [status for sent, status, _ in seen if sent < withdrawn_at]
    after = [(status, what) for sent, status, what in seen if sent > withdrawn_at]
    assert 200 in before  # the grant was in use (and cached) while the withdrawal ran
    assert len(after) >= 8
    assert all(status == 404 for status, _ in after), after  # never a stale grant after the answer
