"""SQLite scans (bulk export) and whole-type reads go through connections of their own with a small
page cache: a bulk read of a large store neither grows the process by a full page cache per reader
thread nor evicts the pages that interactive reads keep hot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhir_server.interactions import writes
from fhir_server.search.query import SearchQuery
from fhir_server.storage.sqlite import search_sql
from fhir_server.storage.sqlite import store as store_module
from fhir_server.storage.sqlite.store import SCAN_CACHE_KIB, SqliteStore


async def test_scans_use_their_own_small_page_cache(tmp_path: Path, monkeypatch: Any) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path / 's.sqlite'}")
    await store.open()
    try:
        async with store.transaction() as tx:
            patient = {"resourceType": "Patient", "id": "p1"}
            await writes.write_version(tx, "Patient", "p1", patient, None, current=None, method="PUT")
        seen: list[tuple[int, int]] = []
        scan = search_sql.run_scan

        mapped: list[int] = []

        def spy(conn: Any, *args: Any) -> Any:
            seen.append((conn.execute("PRAGMA cache_size").fetchone()[0], id(conn)))
            mapped.append(conn.execute("PRAGMA mmap_size").fetchone()[0])
            return scan(conn, *args)

        monkeypatch.setattr(search_sql, "run_scan", spy)
        page = await store.scan(SearchQuery(("Patient",)), 0, limit=10)
        assert "p1" in [s.id for s in page.resources]  # (and its golden record, the identity layer's)
        assert seen and seen[0][0] == -SCAN_CACHE_KIB
        assert mapped == [0]  # an export reads the file: its resident memory is not the mapped store
        # whole-type readers (the identity book, reindex, views) read the same way
        batches: list[int] = []
        resources, bodies = store_module._resource_batch, store_module._body_batch

        def resource_spy(conn: Any, **kw: Any) -> Any:
            batches.append(conn.execute("PRAGMA cache_size").fetchone()[0])
            return resources(conn, **kw)

        def body_spy(conn: Any, **kw: Any) -> Any:
            batches.append(conn.execute("PRAGMA cache_size").fetchone()[0])
            return bodies(conn, **kw)

        monkeypatch.setattr(store_module, "_resource_batch", resource_spy)
        monkeypatch.setattr(store_module, "_body_batch", body_spy)
        assert "p1" in [s.id async for s in store.iterate("Patient")]
        assert [b async for b in store.iterate_bodies("Patient")]
        assert batches and set(batches) == {-SCAN_CACHE_KIB}
        # interactive reads keep their own, larger cache on other connections
        sizes: list[int] = []
        await store._in_reader(lambda conn: sizes.append(conn.execute("PRAGMA cache_size").fetchone()[0]))
        assert sizes and sizes[0] < -SCAN_CACHE_KIB
    finally:
        await store.close()


async def test_closing_waits_for_a_read_ahead_still_running_in_its_thread(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """``iterate_bodies`` reads the next batch ahead in a reader thread; a caller that stops early
    cancels the future, but the thread goes on. Closing the store must not close that connection
    under it (which can crash the process)."""
    import asyncio
    import threading

    store = SqliteStore(f"sqlite:///{tmp_path / 's.sqlite'}")
    await store.open()
    async with store.transaction() as tx:
        for n in range(3):
            body = {"resourceType": "Observation", "id": f"o{n}", "status": "final"}
            await writes.write_version(tx, "Observation", f"o{n}", body, None, current=None, method="PUT")
    real = store_module._body_batch
    started, outcome = threading.Event(), []

    def slow_batch(conn: Any, **kw: Any) -> Any:
        if kw["after"]:  # the read-ahead of the second batch
            started.set()
            threading.Event().wait(0.3)
        try:
            result = real(conn, **kw)
        except Exception as error:
            outcome.append(error)
            raise
        outcome.append("read")
        return result

    monkeypatch.setattr(store_module, "_body_batch", slow_batch)
    batches = store.iterate_bodies("Observation", size=1)
    await anext(batches)  # the caller has its first batch; the second is being read ahead
    assert await asyncio.to_thread(started.wait, 5)
    await batches.aclose()  # the caller stops early: the read-ahead's future is cancelled
    await store.close()
    assert outcome[-1] == "read", outcome
