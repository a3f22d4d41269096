"""Custom SearchParameters: pending until a (resumable) $reindex has indexed existing data."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from fhir_server import jobs
from fhir_server.interactions.errors import FhirError
from fhir_server.search import registry, reindex
from fhir_server.search.capability import capability_search_params
from fhir_server.search.extract import extract_index
from fhir_server.storage.base import StoredResource
from tests.search.conftest import SearchDb

URL = "https://termtem.org/fhir/SearchParameter/test-nickname"
SP = {
    "resourceType": "SearchParameter",
    "id": "test-nickname",
    "url": URL,
    "status": "active",
    "code": "nickname",
    "base": ["Patient"],
    "type": "string",
    "expression": "Patient.name.where(use = 'nickname').given",
}


class _Crash(BaseException):
    """The process dying mid-job: nothing after it runs (no error is recorded, the lease just lapses)."""


class _MemoryStore:
    """The slice of the Store contract the reindex job uses, over a SearchDb."""

    def __init__(self, db: SearchDb) -> None:
        self.db = db
        self.kv: dict[tuple[str, str], dict[str, Any]] = {}
        self.reindexed = 0
        self.fail_after: int | None = None

    async def iterate(self, resource_type: str | None = None):  # type: ignore[no-untyped-def]
        rows = self.db.conn.execute(
            "SELECT rid, type, id, version, last_updated, method, body FROM resource"
            " WHERE type = ? AND method != 'DELETE' ORDER BY rid",
            (resource_type,),
        )
        for row in rows.fetchall():
            yield StoredResource(row[1], row[2], row[3], row[4], row[5], bytes(row[6]))

    async def reindex(self, resource: StoredResource, index: Any) -> None:
        if self.fail_after is not None and self.reindexed >= self.fail_after:
            raise _Crash("the process died")
        from fhir_server.storage.sqlite.index import write_index

        rid = self.db.conn.execute(
            "SELECT rid FROM resource WHERE type=? AND id=?", (resource.resource_type, resource.id)
        ).fetchone()[0]
        write_index(self.db.conn, rid, resource.resource_type, index)
        self.reindexed += 1

    async def kv_get(self, ns: str, key: str) -> dict[str, Any] | None:
        value = self.kv.get((ns, key))
        return orjson.loads(orjson.dumps(value)) if value is not None else None

    async def kv_put(self, ns: str, key: str, value: dict[str, Any]) -> None:
        self.kv[(ns, key)] = orjson.loads(orjson.dumps(value))

    async def kv_list(self, ns: str) -> list[tuple[str, dict[str, Any]]]:
        return [(k, v) for (n, k), v in self.kv.items() if n == ns]

    async def kv_compare_and_set(
        self, ns: str, key: str, expected: dict[str, Any] | None, value: dict[str, Any] | None
    ) -> bool:
        if self.kv.get((ns, key)) != expected:
            return False
        if value is None:
            self.kv.pop((ns, key), None)
        else:
            self.kv[(ns, key)] = orjson.loads(orjson.dumps(value))
        return True


@pytest.fixture
def custom() -> Any:
    yield
    registry.unregister_custom(URL)


def _nick(i: int) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": f"n{i}", "name": [{"use": "nickname", "given": [f"Nok{i}"]}]}


async def test_pending_until_reindexed_then_resumable(custom: Any) -> None:
    db = SearchDb()
    for i in range(1200):
        db.put(_nick(i))
    registry.on_search_parameter_written(SP)
    with pytest.raises(FhirError) as info:
        db.ids("Patient", "nickname=nok1")
    assert info.value.status == 400 and "reindex" in info.value.diagnostics
    assert "nickname" not in {p["name"] for p in capability_search_params("Patient")}
    # a resource written now is indexed at write time already
    db.put(_nick(5000))
    store = _MemoryStore(db)
    job = await reindex.create_job(store)
    store.fail_after = 700
    with pytest.raises(_Crash):
        await jobs.run_now(store, job.id, lease_seconds=2.0)
    saved = await reindex.status(store, job.id)
    assert saved is not None and saved.state == "running" and saved.checkpoint is not None
    assert saved.checkpoint["processed"] == 500  # the last checkpoint
    store.fail_after = None
    # Nobody may take it over while the dead runner's lease lasts; afterwards anyone resumes it.
    assert await jobs.runner.claim(store, job.id, "other", 30) is None
    await asyncio.sleep(2.05)
    done = await jobs.run_now(store, job.id)
    assert done.state == "completed" and done.result == {"processed": 1201} and done.attempts == 2
    assert store.reindexed == 700 + 701  # resumed after the checkpoint, not from scratch
    assert db.idset("Patient", "nickname=nok1199") == {"n1199"}
    assert (
        len(db.ids("Patient", "nickname=nok1", count=500)) == 311
    )  # nok1, nok10-19, nok100-199, nok1000-1199
    assert "nickname" in {p["name"] for p in capability_search_params("Patient")}


async def test_restart_restores_completed_state(custom: Any) -> None:
    db = SearchDb()
    db.put(_nick(1))
    registry.on_search_parameter_written(SP)
    store = _MemoryStore(db)
    job = await reindex.create_job(store)
    await jobs.run_now(store, job.id)
    # "restart": the registry forgets, start-up registers the parameter again (pending) and resumes
    registry.unregister_custom(URL)
    registry.on_search_parameter_written(SP)
    assert registry.is_pending(registry.get("Patient", "nickname"))
    assert await reindex.resume(store) == []
    assert not registry.is_pending(registry.get("Patient", "nickname"))
    # a changed expression needs a new job
    registry.on_search_parameter_written({**SP, "expression": "Patient.name.given"})
    started = await reindex.resume(store)
    assert len(started) == 1
    final = await jobs.run_now(store, started[0])
    assert final.state == "completed"
    assert db.idset("Patient", "nickname=nok") == {"n1"}


async def test_start_up_activates_a_parameter_with_nothing_to_index(custom: Any) -> None:
    store = _MemoryStore(SearchDb())  # no Patient stored at all
    registry.on_search_parameter_written(SP)
    assert await reindex.resume(store) == []  # no job to wait for
    assert not registry.is_pending(registry.get("Patient", "nickname"))
    assert await jobs.list_jobs(store, kind=reindex.KIND) == []


async def test_start_up_keeps_a_parameter_pending_while_its_type_holds_data(custom: Any) -> None:
    db = SearchDb()
    db.put(_nick(1))
    store = _MemoryStore(db)
    registry.on_search_parameter_written(SP)
    assert len(await reindex.resume(store)) == 1
    assert registry.is_pending(registry.get("Patient", "nickname"))


def test_invalid_definitions_are_rejected(custom: Any) -> None:
    for bad in (
        {**SP, "expression": "Patient.name.where("},
        {**SP, "type": "special"},
        {**SP, "base": ["NotAType"]},
    ):
        with pytest.raises(FhirError) as info:
            registry.register_custom(bad)
        assert info.value.status == 422


def test_custom_param_values_extracted(custom: Any) -> None:
    registry.register_custom(SP, pending=False)
    rows = extract_index(_nick(3))
    key = registry.get("Patient", "nickname").key
    assert (key, "nok3", "Nok3", 0) in rows.string
