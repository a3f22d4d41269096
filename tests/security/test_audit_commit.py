"""When AuditEvents become durable: a write's event commits in the write's own transaction; a read's
event is committed (shared with concurrent requests' events) before its answer leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from fhir_server.api.app import create_app
from fhir_server.config import Settings
from fhir_server.storage.sqlite.store import SqliteStore
from tests.security.conftest import BASE, World


class _RecordingStore(SqliteStore):
    """Notes the resource types of every committed write transaction and every group commit."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.commits: list[list[str]] = []
        self.appended: list[list[str]] = []
        self.group_commits = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        async with super().transaction() as tx:
            wrote: list[str] = []
            put = tx.put

            async def recording_put(resource: Any, index: Any) -> Any:
                wrote.append(resource.resource_type)
                return await put(resource, index)

            tx.put = recording_put  # type: ignore[method-assign]
            yield tx
        self.commits.append(wrote)

    def _append_rows(self, rows: Any) -> None:
        super()._append_rows(rows)
        self.group_commits += 1

    async def append(self, resources: Any) -> None:
        await super().append(resources)
        self.appended.append([r.resource_type for r, _ in resources])


@asynccontextmanager
async def _world(tmp_path: Path) -> AsyncIterator[tuple[World, _RecordingStore]]:
    store = _RecordingStore(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    await store.open()
    settings = Settings(store_url=store.url, auth=True, data_dir=tmp_path / "data")
    app = create_app(settings, store=store)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http,
        ):
            yield World(app, http, tmp_path), store
    finally:
        await store.close()


async def test_a_write_and_its_audit_event_commit_together(tmp_path: Path) -> None:
    async with _world(tmp_path) as (world, store):
        hospital = await world.caller("hosp", "Organization/hosp", "hospital")
        store.commits.clear()
        store.appended.clear()
        created = await hospital.create({"resourceType": "Patient", "gender": "female"})
        (commit,) = _writes(store)  # one transaction: the write (and the server's own identity records
        assert commit[0] == "Patient" and commit[-1] == "AuditEvent"  # for it) and the event
        assert commit.count("AuditEvent") == 1 and store.appended == []  # no second commit for the audit
        updated = await hospital.put(f"Patient/{created['id']}", {**created, "gender": "male"})
        assert updated.status_code == 200
        deleted = await hospital.delete(f"Patient/{created['id']}")
        assert deleted.status_code in (200, 204)
        update, delete = _writes(store)[1:]
        assert update[0] == "Patient" and update[-1] == "AuditEvent"
        assert delete[-1] == "AuditEvent" and "Patient" not in delete[:1]  # a tombstone is no put
        events = {
            e["subtype"][0]["code"]: e
            for e in await world.audit_events()
            if e["subtype"][0]["code"] in ("create", "update", "delete")
        }
        assert set(events) == {"create", "update", "delete"}
        for code, status in (("create", 201), ("update", 200), ("delete", deleted.status_code)):
            event = events[code]
            assert event["outcome"] == "0" and event["outcomeDesc"] == f"HTTP {status}"
            assert event["agent"][0]["who"]["identifier"]["value"] == "hosp"
            named = {ent.get("what", {}).get("reference") for ent in event["entity"]}
            assert f"Patient/{created['id']}" in named


async def test_a_refused_write_is_audited_and_stores_nothing(tmp_path: Path) -> None:
    async with _world(tmp_path) as (world, store):
        school = await world.caller("school", "Organization/school", "school")
        store.commits.clear()
        store.appended.clear()
        reply = await school.post("Patient", {"resourceType": "Patient", "birthDate": "not a date"})
        assert reply.status_code in (400, 422)
        assert [c for c in store.commits if c] == []  # nothing written, not even half an audit
        assert store.appended == [["AuditEvent"]]
        (event,) = [e for e in await world.audit_events() if e["subtype"][0]["code"] == "create"]
        assert event["outcome"] == "4"


async def test_concurrent_reads_share_commits_and_each_answer_waits_for_its_event(tmp_path: Path) -> None:
    async with _world(tmp_path) as (world, store):
        hospital = await world.caller("hosp", "Organization/hosp", "hospital")
        child = await hospital.create({"resourceType": "Patient", "gender": "female"})
        before = len([e async for e in store.iterate("AuditEvent")])
        store.appended.clear()
        store.group_commits = 0
        answered = 0

        async def read() -> None:
            nonlocal answered
            reply = await hospital.get(f"Patient/{child['id']}")
            assert reply.status_code == 200
            answered += 1
            seen = answered
            # every answer out so far had its own read event committed before it left
            reads = [s async for s in store.iterate("AuditEvent") if b'"code":"read"' in s.body]
            assert len(reads) >= seen

        await asyncio.gather(*(read() for _ in range(30)))
        events = [orjson.loads(s.body) async for s in store.iterate("AuditEvent")]
        assert len(events) - before == 30
        assert sum(len(batch) for batch in store.appended) == 30
        assert store.group_commits < 30  # concurrent requests shared commits


def _writes(store: _RecordingStore) -> list[list[str]]:
    """The committed transactions that wrote resources (background work, such as the delivery lease,
    may commit transactions of its own at any time)."""
    return [wrote for wrote in store.commits if wrote]


def _bundle(kind: str) -> dict[str, Any]:
    entry = {
        "resource": {"resourceType": "Patient", "gender": "female"},
        "request": {"method": "POST", "url": "Patient"},
    }
    return {"resourceType": "Bundle", "type": kind, "entry": [entry, entry]}


async def test_bundles_audit_every_entry(tmp_path: Path) -> None:
    async with _world(tmp_path) as (world, store):
        hospital = await world.caller("hosp", "Organization/hosp", "hospital")
        store.commits.clear()
        store.appended.clear()
        transaction = await hospital.post("", _bundle("transaction"))
        assert transaction.status_code == 200, transaction.text
        (commit,) = _writes(store)
        assert commit[:2] == ["Patient", "Patient"] and commit[-1] == "AuditEvent" and store.appended == []
        batch = await hospital.post("", _bundle("batch"))  # one transaction per entry
        assert batch.status_code == 200, batch.text
        entries = _writes(store)[1:]
        assert len(entries) == 2 and all(c[0] == "Patient" and "AuditEvent" not in c for c in entries)
        assert store.appended == [["AuditEvent"]]
        events = [e for e in await world.audit_events() if e["subtype"][0]["code"] == "transaction"]
        assert len(events) == 2
        for reply, event in zip((transaction, batch), events, strict=True):
            created = {e["response"]["location"].split("/_history")[0] for e in reply.json()["entry"]}
            named = {ent.get("what", {}).get("reference") for ent in event["entity"]}
            assert len(created) == 2 and created <= named
