"""What only the Mongo backend has: start-up checks, client defaults, transaction retry and rollback."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import orjson
import pytest

from fhir_server.config import Settings
from fhir_server.interactions.errors import FhirError
from fhir_server.search.query import parse_search
from fhir_server.storage import create_store
from fhir_server.storage.base import StoredResource
from fhir_server.storage.mongo import MongoStore
from fhir_server.storage.mongo.connection import StandaloneServerError, check_replica_set, connect
from fhir_server.storage.mongo.double import DoubleClient, forget


def _basic(id_: str, n: int, count: int) -> StoredResource:
    body = orjson.dumps({"resourceType": "Basic", "id": id_, "count": count})
    return StoredResource("Basic", id_, n, "2026-01-01T00:00:00.000Z", "POST" if n == 1 else "PUT", body)


@pytest.fixture
async def store() -> AsyncIterator[MongoStore]:
    name = f"unit-{uuid.uuid4().hex}"
    s = MongoStore(f"mongomock://{name}/termtem")
    await s.open()
    yield s
    await s.close()
    forget(name)


def test_create_store_routes_mongo_urls() -> None:
    assert isinstance(create_store(Settings(store_url="mongomock://x/db")), MongoStore)
    assert isinstance(create_store(Settings(store_url="mongodb://localhost/db?replicaSet=rs0")), MongoStore)


async def test_standalone_server_is_refused_with_instructions() -> None:
    client = DoubleClient(f"standalone-{uuid.uuid4().hex}", hello={"isWritablePrimary": True, "ok": 1.0})
    store = MongoStore("mongodb://db.example:27017/termtem", client=client, database="termtem")
    with pytest.raises(StandaloneServerError) as info:
        await store.open()
    message = str(info.value)
    assert "standalone" in message and "--replSet rs0" in message and "rs.initiate()" in message
    assert "replicaSet=rs0" in message
    await client.close()


def test_replica_set_members_and_mongos_pass_the_check() -> None:
    check_replica_set({"setName": "rs0", "isWritablePrimary": True}, "mongodb://h/db")
    check_replica_set({"msg": "isdbgrid"}, "mongodb://h/db")
    with pytest.raises(StandaloneServerError) as info:
        check_replica_set({"isWritablePrimary": True}, "mongodb://user:secret@h/db")
    assert "secret" not in str(info.value)


async def test_real_client_defaults_to_majority_journaled_writes() -> None:
    client, database = connect("mongodb://localhost:1/site?replicaSet=rs0")
    try:
        assert database == "site"
        assert client.write_concern.document == {"w": "majority", "j": True}
        assert client.read_concern.level == "majority"
    finally:
        await client.close()
    client, database = connect("mongodb://localhost:1/?replicaSet=rs0&w=1")
    try:
        assert database == "termtem" and client.write_concern.document.get("w") == 1
    finally:
        await client.close()


async def test_transient_error_restarts_and_replays_the_transaction(store: MongoStore) -> None:
    async with store.transaction() as tx:
        await tx.put(_basic("n", 1, 0), None)
    store.client.inject_failures("TransientTransactionError", "TransientTransactionError")
    async with store.transaction() as tx:
        current = await tx.read("Basic", "n")
        assert current is not None
        await tx.put(_basic("n", 2, 1), None)
        await tx.put(_basic("m", 1, 7), None)
    final = await store.read("Basic", "n")
    assert final is not None and final.version == 2 and orjson.loads(final.body)["count"] == 1
    assert [(r.id, r.version) async for r in store.iterate_history()] == [("n", 1), ("n", 2), ("m", 1)]
    assert store.client.failures == []


async def test_replay_refuses_when_what_was_read_has_changed(store: MongoStore) -> None:
    async with store.transaction() as tx:
        await tx.put(_basic("n", 1, 0), None)
    with pytest.raises(FhirError) as info:
        async with store.transaction() as tx:
            assert await tx.read("Basic", "n") is not None
            # Another process commits a newer version, then our write conflicts and is retried.
            await store.resources.update_one({"_id": "Basic/n"}, {"$set": {"v": 5}})
            store.client.inject_failures("TransientTransactionError")
            await tx.put(_basic("n", 2, 1), None)
    assert info.value.status == 409
    assert [(r.id, r.version) async for r in store.iterate_history()] == [("n", 1)]


async def test_errors_without_the_transient_label_are_not_retried(store: MongoStore) -> None:
    from pymongo.errors import OperationFailure

    store.client.inject_failures("SomethingElse")
    with pytest.raises(OperationFailure):
        async with store.transaction() as tx:
            await tx.put(_basic("n", 1, 0), None)
    assert await store.read("Basic", "n") is None


async def test_a_lost_update_is_a_conflict_not_an_overwrite(store: MongoStore) -> None:
    async with store.transaction() as tx:
        await tx.put(_basic("n", 1, 0), None)
    with pytest.raises(FhirError) as info:
        async with store.transaction() as tx:
            await tx.put(_basic("n", 3, 9), None)  # skips version 2
    assert info.value.status == 409
    with pytest.raises(FhirError):
        async with store.transaction() as tx:
            await tx.put(_basic("n", 1, 9), None)  # creates what exists
    current = await store.read("Basic", "n")
    assert current is not None and current.version == 1


async def test_rollback_undoes_every_write_of_the_transaction(store: MongoStore) -> None:
    async with store.transaction() as tx:
        await tx.put(_basic("a", 1, 0), None)
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.put(_basic("a", 2, 1), None)
            await tx.put(_basic("b", 1, 1), None)
            await tx.search(parse_search("Basic", [], base_url="", strict=True, default_count=10,
                                         max_count=10))  # sends the buffered writes
            raise RuntimeError("boom")
    current = await store.read("Basic", "a")
    assert current is not None and current.version == 1
    assert await store.read("Basic", "b") is None
    assert [(r.id, r.version) async for r in store.iterate_history()] == [("a", 1)]
    counter = await store.counters.find_one({"_id": "seq"})
    assert counter is not None and counter["n"] == 1


async def test_a_replayed_transaction_records_its_events_once(store: MongoStore) -> None:
    """A transient error after the events were written: the retry undoes them and records them again,
    with the same numbers and position (no gap, no second copy)."""
    streams = [f"subscription/{n}" for n in range(3)]
    async with store.transaction() as tx:
        await tx.outbox_put_many(streams, {"w": 0})
    async with store.transaction() as tx:
        await tx.outbox_put_many(streams, {"w": 1})
        await tx.search(parse_search("Basic", [], base_url="", strict=True, default_count=10,
                                     max_count=10))  # sends the events
        store.client.inject_failures("TransientTransactionError")
        await tx.put(_basic("n", 1, 0), None)  # fails at the commit: restarted, the events replayed
    assert store.client.failures == []
    for name in streams:
        assert [(e.number, e.payload["w"]) for e in await store.outbox_read(name)] == [(1, 0), (2, 1)]
        assert await store.outbox_last(name) == 2
    assert [(e.stream, e.number, e.seq) for e in await store.outbox_since(0)] == [
        *((name, 1, 1) for name in streams),
        *((name, 2, 2) for name in streams),
    ]
    async with store.transaction() as tx:
        await tx.outbox_put_many(streams[:1], {"w": 2})
    assert [e.number for e in await store.outbox_read(streams[0], after=1)] == [2, 3]
