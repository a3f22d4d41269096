"""Stores written with an older outbox layout open with every event moved to the current one (schema
version 3: one recording per write, ``storage.outbox``): same numbers, same positions, numbering and
positions carrying on, and the store's schema version raised so an older release refuses it. SQLite
from version 1 (events under their stream's name) and 2 (one row per stream and event, keyed by a
stream id); Mongo (on the test double) from version 2 (one document per stream and event)."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import orjson

from fhir_server.storage.mongo import MongoStore
from fhir_server.storage.mongo.double import client_for, forget
from fhir_server.storage.schema_version import KEY, NAMESPACE, SCHEMA_VERSION, check_schema
from fhir_server.storage.sqlite.store import SqliteStore

_FIRST_LAYOUT = [
    """CREATE TABLE outbox(
        seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, number INTEGER NOT NULL,
        recorded TEXT NOT NULL, payload BLOB NOT NULL, UNIQUE(stream, number))""",
    "CREATE TABLE outbox_stream(stream TEXT PRIMARY KEY, last INTEGER NOT NULL)",
    """CREATE TABLE kv(
        namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY(namespace, key))""",
]


def _first_layout_store(path: Path) -> None:
    conn = sqlite3.connect(path)
    for statement in _FIRST_LAYOUT:
        conn.execute(statement)
    rows = [("subscription/a", 1), ("subscription/b", 1), ("subscription/a", 2), ("subscription/a", 3)]
    for stream, number in rows:
        conn.execute(
            "INSERT INTO outbox(stream, number, recorded, payload) VALUES(?,?,?,?)",
            (
                stream,
                number,
                "2026-11-01T00:00:00.000Z",
                orjson.dumps({"focus": f"Basic/{stream[-1]}{number}"}),
            ),
        )
    conn.execute("INSERT INTO outbox_stream VALUES('subscription/a', 3), ('subscription/b', 1)")
    conn.execute("DELETE FROM outbox WHERE stream='subscription/a' AND number=1")  # trimmed, delivered
    conn.execute("INSERT INTO outbox(stream, number, recorded, payload) VALUES('gone', 1, 'x', x'7b7d')")
    conn.execute("DELETE FROM outbox WHERE stream='gone'")  # the highest sequence number so far: 5
    conn.execute(
        "INSERT INTO kv VALUES(?, ?, ?)", (NAMESPACE, KEY, orjson.dumps({"version": 1, "software": "0.1"}))
    )
    conn.commit()
    conn.close()


async def test_events_of_the_first_layout_keep_their_numbers(tmp_path: Path, caplog: Any) -> None:
    path = tmp_path / "old.sqlite"
    _first_layout_store(path)
    store = SqliteStore(f"sqlite:///{path}")
    with caplog.at_level(logging.INFO, logger="termtem"):
        await store.open()
    assert "outbox moved from layout version 1" in caplog.text  # the operator sees the migration
    try:
        assert await check_schema(store) == SCHEMA_VERSION == 3
        assert (await store.kv_get(NAMESPACE, KEY) or {})["version"] == 3
        events = await store.outbox_read("subscription/a")
        assert [(e.number, e.seq, e.payload["focus"]) for e in events] == [
            (2, 3, "Basic/a2"),
            (3, 4, "Basic/a3"),
        ]
        assert (
            await store.outbox_last("subscription/a") == 3 and await store.outbox_last("subscription/b") == 1
        )
        assert [(e.stream, e.number) for e in await store.outbox_since(0)] == [
            ("subscription/b", 1),
            ("subscription/a", 2),
            ("subscription/a", 3),
        ]
        async with store.transaction() as tx:
            await tx.outbox_put_many(["subscription/a", "subscription/c"], {"focus": "Basic/new"})
        fresh = await store.outbox_since(4)
        assert [(e.stream, e.number) for e in fresh] == [("subscription/a", 4), ("subscription/c", 1)]
        assert fresh[0].seq > 5  # a sequence number is never reused, trimmed ones included
        await store.migrate_outbox()  # once done, nothing more to do
        assert len(await store.outbox_since(0)) == 5
    finally:
        await store.close()
    tables = {
        r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    assert {"outbox_log", "outbox_streams", "outbox_marks"} <= tables
    assert not {"outbox", "outbox_stream", "outbox_events"} & tables


_SECOND_LAYOUT = [
    """CREATE TABLE outbox_streams(
        sid INTEGER PRIMARY KEY, stream TEXT NOT NULL UNIQUE, last INTEGER NOT NULL)""",
    """CREATE TABLE outbox_events(
        seq INTEGER PRIMARY KEY AUTOINCREMENT, sid INTEGER NOT NULL, number INTEGER NOT NULL,
        recorded TEXT NOT NULL, payload BLOB NOT NULL, UNIQUE(sid, number))""",
    """CREATE TABLE kv(
        namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY(namespace, key))""",
]


def _second_layout_store(path: Path) -> None:
    conn = sqlite3.connect(path)
    for statement in _SECOND_LAYOUT:
        conn.execute(statement)
    conn.execute("INSERT INTO outbox_streams VALUES(1, 'subscription/a', 3), (2, 'subscription/b', 2)")
    conn.execute("INSERT INTO outbox_streams VALUES(3, 'subscription/done', 4)")  # all trimmed
    for seq, sid, number in [(4, 1, 1), (5, 2, 1), (6, 1, 2), (7, 2, 2), (8, 1, 3)]:
        payload = orjson.dumps({"focus": f"Basic/{sid}-{number}"})
        conn.execute(
            "INSERT INTO outbox_events VALUES(?,?,?,?,?)",
            (seq, sid, number, "2026-11-01T00:00:00.000Z", payload),
        )
    conn.execute("DELETE FROM outbox_events WHERE seq IN (4, 5)")  # trimmed, delivered
    conn.execute("UPDATE sqlite_sequence SET seq=12 WHERE name='outbox_events'")  # later ones trimmed too
    conn.execute(
        "INSERT INTO kv VALUES(?, ?, ?)", (NAMESPACE, KEY, orjson.dumps({"version": 2, "software": "0.2"}))
    )
    conn.commit()
    conn.close()


async def test_events_of_the_second_layout_keep_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _second_layout_store(path)
    store = SqliteStore(f"sqlite:///{path}")
    await store.open()
    try:
        assert await check_schema(store) == 3
        assert [(e.number, e.seq, e.payload["focus"]) for e in await store.outbox_read("subscription/a")] == [
            (2, 6, "Basic/1-2"),
            (3, 8, "Basic/1-3"),
        ]
        assert [e.number for e in await store.outbox_read("subscription/b", after=0)] == [2]
        assert (
            await store.outbox_read("subscription/done") == []
            and await store.outbox_last("subscription/done") == 4
        )
        assert [(e.stream, e.number) for e in await store.outbox_since(0)] == [
            ("subscription/a", 2),
            ("subscription/b", 2),
            ("subscription/a", 3),
        ]
        async with store.transaction() as tx:
            await tx.outbox_put_many(
                ["subscription/b", "subscription/done", "subscription/new"], {"focus": "x"}
            )
        fresh = await store.outbox_since(8)
        assert [(e.stream, e.number) for e in fresh] == [
            ("subscription/b", 3),
            ("subscription/done", 5),
            ("subscription/new", 1),
        ]
        assert fresh[0].seq == 13  # positions carry on after the old table's highest
        assert await store.outbox_trim("subscription/a", 2) == 1
        assert [e.number for e in await store.outbox_read("subscription/a")] == [3]
    finally:
        await store.close()


async def test_mongo_events_of_the_second_layout_keep_their_numbers() -> None:
    name = f"outbox-v2-{uuid.uuid4().hex}"
    url = f"mongomock://{name}/termtem"
    client, database = client_for(url)
    db = client[database]
    await db["outbox"].create_index([("s", 1), ("n", 1)], name="stream_number", unique=True)
    for seq, stream, number in [(2, "subscription/a", 2), (3, "subscription/b", 1), (4, "subscription/a", 3)]:
        doc = {
            "_id": seq,
            "s": stream,
            "n": number,
            "r": "2026-11-01T00:00:00.000Z",
            "p": orjson.dumps({"seq": seq}),
        }
        await db["outbox"].insert_one(doc)
    for doc in [
        {"_id": "outbox", "n": 5},
        {"_id": "outbox:subscription/a", "n": 3},
        {"_id": "outbox:subscription/b", "n": 1},
        {"_id": "outbox:subscription/done", "n": 7},
    ]:
        await db["counters"].insert_one(doc)
    store = MongoStore(url)
    await store.open()
    try:
        assert [(e.number, e.seq) for e in await store.outbox_read("subscription/a")] == [(2, 2), (3, 4)]
        assert [(e.stream, e.number) for e in await store.outbox_since(0)] == [
            ("subscription/a", 2),
            ("subscription/b", 1),
            ("subscription/a", 3),
        ]
        assert await store.outbox_read("subscription/done") == []
        async with store.transaction() as tx:
            await tx.outbox_put_many(["subscription/a", "subscription/done"], {"focus": "x"})
        assert [(e.stream, e.number, e.seq) for e in await store.outbox_since(4)] == [
            ("subscription/a", 4, 6),
            ("subscription/done", 8, 6),
        ]
        await store.migrate_outbox()  # once done, nothing more to do
        assert [e.number for e in await store.outbox_read("subscription/a")] == [2, 3, 4]
        assert await store.outbox_trim("subscription/a", 3) == 2
        assert [e.number for e in await store.outbox_read("subscription/a")] == [4]
    finally:
        await store.close()
        forget(name)
