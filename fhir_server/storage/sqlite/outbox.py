"""The SQLite outbox (schema version 3, ``storage.outbox``): one ``outbox_log`` row per write.

- ``outbox_streams``: a stream named once (``sid``), its last event number, how far it is trimmed and
  the position of its latest mark;
- ``outbox_log``: one row per write: ``seq`` (AUTOINCREMENT, never reused), recorded, payload, and
  ``events``: the stream ids then their event numbers, as 64-bit little-endian integers;
- ``outbox_marks``: (sid, number) -> seq for the marked events (a small ``WITHOUT ROWID`` table).

Every function takes the connection and runs inside the caller's transaction (a write's, or a read
snapshot), so an event exists exactly when its write committed.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from array import array
from collections.abc import Sequence
from typing import Any

import orjson

from fhir_server.storage.base import OutboxEvent
from fhir_server.storage.outbox import MARK_SPACING, NO_MARK, needs_mark

log = logging.getLogger("termtem")

SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS outbox_streams(
        sid INTEGER PRIMARY KEY, stream TEXT NOT NULL UNIQUE, last INTEGER NOT NULL,
        trimmed INTEGER NOT NULL DEFAULT 0, mark_seq INTEGER NOT NULL DEFAULT {NO_MARK})""",
    """CREATE TABLE IF NOT EXISTS outbox_log(
        seq INTEGER PRIMARY KEY AUTOINCREMENT, recorded TEXT NOT NULL, payload BLOB NOT NULL,
        events BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS outbox_marks(
        sid INTEGER NOT NULL, number INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY(sid, number))
        WITHOUT ROWID""",
]
_CHUNK = 500  # streams per statement, within SQLite's limit on bound parameters
_BIG_ENDIAN = sys.byteorder == "big"


def _pack(sids: Sequence[int], numbers: Sequence[int]) -> bytes:
    values = array("q", [*sids, *numbers])
    if _BIG_ENDIAN:
        values.byteswap()
    return values.tobytes()


def _unpack(blob: bytes) -> array[int]:
    values = array("q")
    values.frombytes(blob)
    if _BIG_ENDIAN:
        values.byteswap()
    return values


def _number_in(blob: bytes, sid: int) -> int | None:
    """The event number ``sid`` has in a log row, None when the row is not on that stream."""
    values = _unpack(blob)
    half = len(values) // 2
    try:
        return values[values.index(sid, 0, half) + half]
    except ValueError:
        return None


# --- writing ------------------------------------------------------------------------------------------


def put(conn: sqlite3.Connection, streams: Sequence[str], recorded: str, data: bytes) -> None:
    """Record one event on each of ``streams``: one log row, the numbers, the marks that are due."""
    names = list(dict.fromkeys(streams))
    numbered: list[tuple[int, int, int]] = []  # (sid, number, the stream's previous mark position)
    for start in range(0, len(names), _CHUNK):
        chunk = names[start : start + _CHUNK]
        rows = _number(conn, chunk)
        if len(rows) < len(chunk):  # streams seen for the first time
            known = {row[3] for row in rows}
            new = [name for name in chunk if name not in known]
            conn.executemany("INSERT INTO outbox_streams(stream, last) VALUES(?, 0)", [(n,) for n in new])
            rows += _number(conn, new)
        order = {name: n for n, name in enumerate(chunk)}
        rows.sort(key=lambda row: order[row[3]])  # the events in the order the streams were given
        numbered.extend((sid, number, mark) for sid, number, mark, _ in rows)
    events = _pack([sid for sid, _, _ in numbered], [number for _, number, _ in numbered])
    seq = conn.execute(
        "INSERT INTO outbox_log(recorded, payload, events) VALUES(?,?,?)", (recorded, data, events)
    ).lastrowid
    assert seq is not None
    marks = [(sid, number, seq) for sid, number, mark in numbered if needs_mark(seq, mark)]
    if marks:
        conn.executemany("INSERT INTO outbox_marks(sid, number, seq) VALUES(?,?,?)", marks)
        conn.executemany(
            "UPDATE outbox_streams SET mark_seq=? WHERE sid=?", [(seq, sid) for sid, _, _ in marks]
        )


def _number(conn: sqlite3.Connection, names: Sequence[str]) -> list[tuple[int, int, int, str]]:
    """One statement numbers the event on every stream (a statement per stream cost more)."""
    marks = ",".join("?" * len(names))
    return conn.execute(
        f"UPDATE outbox_streams SET last=last+1 WHERE stream IN ({marks})"
        " RETURNING sid, last, mark_seq, stream",
        names,
    ).fetchall()


def trim(conn: sqlite3.Connection, stream: str, through: int) -> int:
    """Forget the stream's events up to ``through``; delete the log rows nobody needs any more."""
    row = conn.execute("SELECT sid, last, trimmed FROM outbox_streams WHERE stream=?", (stream,)).fetchone()
    if row is None:
        return 0
    sid, last, trimmed = row
    new = min(through, last)  # numbering carries on after the last event: later ones are not trimmed
    if new <= trimmed:
        return 0
    conn.execute("UPDATE outbox_streams SET trimmed=? WHERE sid=?", (new, sid))
    conn.execute(
        "DELETE FROM outbox_marks WHERE sid=?1 AND number < "
        "(SELECT max(number) FROM outbox_marks WHERE sid=?1 AND number<=?2)",
        (sid, new + 1),
    )
    # The first position still needed: for every stream holding events, its greatest mark at or
    # below its first kept event (no mark found: 0, nothing goes).
    (needed,) = conn.execute(
        "SELECT min(coalesce((SELECT m.seq FROM outbox_marks m WHERE m.sid=s.sid AND m.number<=s.trimmed+1"
        " ORDER BY m.number DESC LIMIT 1), 0)) FROM outbox_streams s WHERE s.last > s.trimmed"
    ).fetchone()
    if needed is None:  # no stream holds an event
        needed = latest(conn) + 1
    conn.execute("DELETE FROM outbox_log WHERE seq<?", (needed,))
    return int(new - trimmed)


# --- reading ------------------------------------------------------------------------------------------


def read(conn: sqlite3.Connection, stream: str, after: int, limit: int) -> list[OutboxEvent]:
    row = conn.execute("SELECT sid, last, trimmed FROM outbox_streams WHERE stream=?", (stream,)).fetchone()
    if row is None or limit <= 0:
        return []
    sid, last, trimmed = row
    wanted = max(after, trimmed) + 1
    out: list[OutboxEvent] = []
    position = 0
    while len(out) < limit and wanted <= last:
        # The greatest mark at or below the wanted event is less than MARK_SPACING positions before it.
        mark = conn.execute(
            "SELECT seq FROM outbox_marks WHERE sid=? AND number<=? ORDER BY number DESC LIMIT 1",
            (sid, wanted),
        ).fetchone()
        position = max(position, mark[0] if mark else 0)
        found = False
        for seq, recorded, payload, events in conn.execute(
            "SELECT seq, recorded, payload, events FROM outbox_log WHERE seq>=? AND seq<? ORDER BY seq",
            (position, position + MARK_SPACING),
        ):
            number = _number_in(events, sid)
            if number is None or number < wanted:
                continue
            out.append(OutboxEvent(stream, number, seq, recorded, orjson.loads(payload)))
            wanted, found = number + 1, True
            if len(out) >= limit:
                break
        if not found:  # the event is not there (forgotten meanwhile): nothing more to find
            break
        position += MARK_SPACING
    return out


def since(conn: sqlite3.Connection, seq: int, limit: int) -> list[OutboxEvent]:
    """Events of every stream after position ``seq``, whole writes at a time, at least ``limit`` when
    there are that many (a write's events share its position and its parsed payload)."""
    streams = {
        sid: (name, trimmed)
        for sid, name, trimmed in conn.execute("SELECT sid, stream, trimmed FROM outbox_streams")
    }
    out: list[OutboxEvent] = []
    cursor = conn.execute(
        "SELECT seq, recorded, payload, events FROM outbox_log WHERE seq>? ORDER BY seq", (seq,)
    )
    try:
        for position, recorded, payload, events in cursor:
            values = _unpack(events)
            half = len(values) // 2
            parsed: dict[str, Any] = orjson.loads(payload)
            for sid, number in zip(values[:half], values[half:], strict=True):
                name, trimmed = streams.get(sid, (None, 0))
                if name is not None and number > trimmed:
                    out.append(OutboxEvent(name, number, position, recorded, parsed))
            if len(out) >= limit:
                break
    finally:
        cursor.close()
    return out


def last(conn: sqlite3.Connection, stream: str) -> int:
    row = conn.execute("SELECT last FROM outbox_streams WHERE stream=?", (stream,)).fetchone()
    return int(row[0]) if row else 0


def latest(conn: sqlite3.Connection) -> int:
    """The highest position ever recorded (0: none), also once its rows are deleted."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox_log'").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


# --- older layouts ------------------------------------------------------------------------------------


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def migrate(conn: sqlite3.Connection) -> None:
    """Bring events of an older layout into this one, in one transaction, with their numbers and
    positions (nothing, once done): version 1 kept them under their stream's name (``outbox``,
    ``outbox_stream``), version 2 one row per stream and write (``outbox_events``)."""
    tables = _tables(conn)
    first = {"outbox", "outbox_stream"} <= tables
    second = "outbox_events" in tables
    if not first and not second:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox_streams)")}
        if "trimmed" not in columns:  # a version 2 table: the columns version 3 added
            conn.execute("ALTER TABLE outbox_streams ADD COLUMN trimmed INTEGER NOT NULL DEFAULT 0")
            conn.execute(f"ALTER TABLE outbox_streams ADD COLUMN mark_seq INTEGER NOT NULL DEFAULT {NO_MARK}")
        if first:
            conn.execute(
                "INSERT INTO outbox_streams(stream, last) SELECT stream, last FROM outbox_stream WHERE true "
                "ON CONFLICT(stream) DO UPDATE SET last=max(last, excluded.last)"
            )
            _move(conn, "SELECT seq, stream, number, recorded, payload FROM outbox ORDER BY seq", "outbox")
            conn.execute("DROP TABLE outbox")
            conn.execute("DROP TABLE outbox_stream")
        if second:
            _move(
                conn,
                "SELECT e.seq, s.stream, e.number, e.recorded, e.payload FROM outbox_events e "
                "JOIN outbox_streams s ON s.sid = e.sid ORDER BY e.seq",
                "outbox_events",
            )
            conn.execute("DROP TABLE outbox_events")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    old = " and ".join(n for n, found in (("1", first), ("2", second)) if found)
    log.info("notification outbox moved from layout version %s to one entry per write (version 3)", old)


def _move(conn: sqlite3.Connection, select: str, table: str) -> None:
    """Each old event becomes a log row of its own at its old position, marked (an old layout's
    events are few: they are trimmed once delivered); a stream's events before its first one left
    count as trimmed."""
    sids = dict(conn.execute("SELECT stream, sid FROM outbox_streams"))
    first: dict[int, int] = {}
    for seq, stream, number, recorded, payload in conn.execute(select).fetchall():
        sid = sids[stream]
        conn.execute(
            "INSERT INTO outbox_log(seq, recorded, payload, events) VALUES(?,?,?,?)",
            (seq, recorded, payload, _pack([sid], [number])),
        )
        conn.execute("INSERT OR IGNORE INTO outbox_marks(sid, number, seq) VALUES(?,?,?)", (sid, number, seq))
        conn.execute("UPDATE outbox_streams SET mark_seq=max(mark_seq, ?) WHERE sid=?", (seq, sid))
        first.setdefault(sid, number)
    for sid, last_number in conn.execute("SELECT sid, last FROM outbox_streams").fetchall():
        kept = first.get(sid)
        conn.execute(
            "UPDATE outbox_streams SET trimmed=max(trimmed, ?) WHERE sid=?",
            (last_number if kept is None else kept - 1, sid),
        )
    # A position is never reused: the log carries on after the old table's highest.
    old = conn.execute("SELECT seq FROM sqlite_sequence WHERE name=?", (table,)).fetchone()
    if old is not None:
        if conn.execute("SELECT 1 FROM sqlite_sequence WHERE name='outbox_log'").fetchone() is None:
            conn.execute("INSERT INTO sqlite_sequence(name, seq) VALUES('outbox_log', ?)", (old[0],))
        else:
            conn.execute("UPDATE sqlite_sequence SET seq=max(seq, ?) WHERE name='outbox_log'", (old[0],))
        conn.execute("DELETE FROM sqlite_sequence WHERE name=?", (table,))
