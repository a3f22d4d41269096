"""What a notifying write costs the SQLite store: one outbox row however many subscriptions it notifies,
and a mark per stream only every ``MARK_SPACING`` writes (schema version 2 wrote a row and an index
entry per subscription: a hundred scattered index pages per commit)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fhir_server.storage.outbox import MARK_SPACING
from fhir_server.storage.sqlite.store import SqliteStore


async def test_a_write_notifying_a_hundred_subscriptions_is_one_row(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = SqliteStore(f"sqlite:///{path}")
    await store.open()
    streams = [f"subscription/{n}" for n in range(100)]
    writes = 3 * MARK_SPACING
    try:
        for w in range(writes):
            async with store.transaction() as tx:
                await tx.outbox_put_many(streams, {"focus": f"Patient/{w}", "version": 1})
        assert [e.number for e in await store.outbox_read("subscription/57", after=writes - 3)] == [
            writes - 2,
            writes - 1,
            writes,
        ]
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM outbox_log").fetchone()[0] == writes
    # Marks at the first write, then every MARK_SPACING writes: three per stream here.
    assert conn.execute("SELECT count(*) FROM outbox_marks").fetchone()[0] == 100 * 3
    assert conn.execute("SELECT count(DISTINCT number) FROM outbox_marks").fetchone()[0] == 3
