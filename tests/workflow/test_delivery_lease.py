"""The notification job runs in one server process at a time: of several processes that find the lease
free at the same moment, exactly one takes it; the others wait until it lapses."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from fhir_server.storage.sqlite.store import SqliteStore
from fhir_server.subscriptions.runner import LEASE_KEY, LEASE_NAMESPACE, Background


class _Interleaving:
    """The store as several processes see it: key/value calls of the others run in between, in an
    order that varies (seeded, so a failure repeats)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._turns = random.Random(7)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if not name.startswith("kv_"):
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            for _ in range(self._turns.randrange(4)):
                await asyncio.sleep(0)
            return await target(*args, **kwargs)

        return call


async def test_one_process_holds_the_lease(store: SqliteStore) -> None:
    shared = _Interleaving(store)
    processes = [Background(shared, settings=None, base_url="") for _ in range(6)]
    for _ in range(30):
        taken = await asyncio.gather(*(p._lease() for p in processes))
        assert taken.count(True) == 1
        holder = processes[taken.index(True)]
        assert (await store.kv_get(LEASE_NAMESPACE, LEASE_KEY))["holder"] == holder.holder
        assert await holder._lease()  # renewing its own lease
        await store.kv_delete(LEASE_NAMESPACE, LEASE_KEY)  # as if it lapsed
