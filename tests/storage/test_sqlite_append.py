"""The group commit (``SqliteStore.append``, the AuditEvents of every request) inserts new resources and
their index rows without first deleting index rows a new resource cannot have, one ``executemany`` per
index table for the whole batch; an id already stored is refused, never silently replaced."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from fhir_server.interactions import writes
from fhir_server.search.query import parse_search
from fhir_server.security import audit
from fhir_server.storage.sqlite.store import SqliteStore


def _event(n: int) -> tuple[object, object]:
    record = audit.AuditRecord(
        interaction="read",
        outcome_status=200,
        client_id=f"client-{n}",
        organization="Organization/hosp",
        resource_type="Patient",
        resource_id=f"p{n}",
    )
    return audit.audit_version(record)


async def test_a_batch_of_events_is_indexed_without_deleting_and_found(tmp_path: Path) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path / 's.sqlite'}")
    await store.open()
    try:
        statements: list[str] = []
        assert store._writer is not None
        store._writer.set_trace_callback(statements.append)
        await asyncio.gather(*(store.append([_event(n)]) for n in range(6)))
        store._writer.set_trace_callback(None)
        assert not [s for s in statements if s.startswith("DELETE")], statements
        for n in range(6):
            query = parse_search(
                "AuditEvent",
                [("entity", f"Patient/p{n}"), ("agent:identifier", f"{audit.CLIENT_ID_SYSTEM}|client-{n}")],
                base_url="",
                strict=True,
                default_count=10,
                max_count=10,
            )
            page = await store.search(query)
            assert len(page.matches) == 1
    finally:
        await store.close()


async def test_an_append_under_a_stored_id_is_refused(tmp_path: Path) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path / 's.sqlite'}")
    await store.open()
    try:
        stored, index = _event(1)
        await store.append([(stored, index)])
        again = writes.first_version("AuditEvent", {"resourceType": "AuditEvent", "recorded": "2024"})[0]
        clash = type(stored)(stored.resource_type, stored.id, 1, again.last_updated, "POST", again.body)
        with pytest.raises(sqlite3.IntegrityError):
            await store.append([(clash, index)])
        kept = await store.read("AuditEvent", stored.id)
        assert kept is not None and kept.body == stored.body
    finally:
        await store.close()
