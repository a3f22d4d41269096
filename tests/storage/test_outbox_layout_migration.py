"""A SQLite store written with the first outbox layout (schema version 1: events under their stream's
name) opens with every event moved to the keyed tables: same numbers, same sequence, numbering and
sequence carrying on, and the store's schema version raised so an older release refuses it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

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


async def test_events_of_the_first_layout_keep_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _first_layout_store(path)
    store = SqliteStore(f"sqlite:///{path}")
    await store.open()
    try:
        assert await check_schema(store) == SCHEMA_VERSION == 2
        assert (await store.kv_get(NAMESPACE, KEY) or {})["version"] == 2
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
    assert {"outbox_events", "outbox_streams"} <= tables and not {"outbox", "outbox_stream"} & tables
