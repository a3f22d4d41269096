"""The embedded store: Python's sqlite3 in WAL mode.

One writer connection owned by a single thread serialises write transactions (so concurrent
transactions over the same resources can neither deadlock nor lose an update); reader connections
serve searches and history in a small thread pool; point reads by primary key run inline, since a
thread hop costs more than the lookup. Writes inside a transaction are buffered and sent to the
writer thread together with the next read or the commit, so a plain create costs one hop.

``append`` is the group commit: new resources that need no read first (AuditEvents) queue up, and
one writer hop commits everything queued so far in one transaction; each caller returns only once
its own resource is committed. Under load many requests share one commit and one hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import orjson

from fhir_server.storage.base import (
    HistoryPage,
    HistoryQuery,
    Method,
    OutboxEvent,
    ScanPage,
    StoredResource,
    instant_now,
)
from fhir_server.storage.files import private_file, readable_by_others
from fhir_server.storage.sqlite import index as index_tables
from fhir_server.storage.sqlite import outbox

T = TypeVar("T")
log = logging.getLogger("termtem")

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS resource(
        rid INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
        last_updated TEXT NOT NULL, method TEXT NOT NULL, body BLOB NOT NULL, UNIQUE(type, id))""",
    """CREATE TABLE IF NOT EXISTS history(
        seq INTEGER PRIMARY KEY, rid INTEGER NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
        version INTEGER NOT NULL, last_updated TEXT NOT NULL, method TEXT NOT NULL, body BLOB NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS history_version ON history(rid, version)",
    "CREATE INDEX IF NOT EXISTS history_type ON history(type, seq)",
    "CREATE INDEX IF NOT EXISTS history_updated ON history(last_updated)",
    """CREATE TABLE IF NOT EXISTS kv(
        namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY(namespace, key))""",
]

_COLUMNS = "type, id, version, last_updated, method, body"


def _row(row: tuple[Any, ...]) -> StoredResource:
    return StoredResource(row[0], row[1], row[2], row[3], row[4], bytes(row[5]))


def path_from_url(url: str) -> str:
    """``sqlite:///relative/path``, ``sqlite:////absolute/path`` or ``sqlite:///:memory:``."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite store URL: {url!r} (expected sqlite:///PATH)")
    return url[len("sqlite:///") :]


SCAN_CACHE_KIB = 8192  # page cache of a scan connection (interactive connections keep 64 MB each)


class SqliteStore:
    def __init__(self, url: str, *, synchronous: str = "normal", readers: int = 4) -> None:
        self.url = url
        self._path = path_from_url(url)
        self._synchronous = synchronous.upper()
        self._writer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._reader_pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="sqlite-reader")
        self._reader_local = threading.local()
        self._writer: sqlite3.Connection | None = None
        self._inline: sqlite3.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._reader_connections: list[sqlite3.Connection] = []
        self._reader_connections_lock = threading.Lock()
        # Set (and replaced) whenever this process commits outbox events: wakes ``outbox_wait``.
        self._outbox_signal: asyncio.Event | None = None
        self._appends: list[tuple[Sequence[tuple[StoredResource, Any]], asyncio.Future[None]]] = []
        self._appender: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA mmap_size=268435456")
        return conn

    async def open(self) -> None:
        if self._path != ":memory:":
            path = Path(self._path)
            private_file(path)  # children's data: 0600 in a 0700 folder from the start
            if readable_by_others(path):
                log.warning("the store %s is readable by other users: run chmod 600 on it", path)

        def setup() -> sqlite3.Connection:
            conn = self._connect()
            for statement in _SCHEMA + list(index_tables.SCHEMA) + outbox.SCHEMA:
                conn.execute(statement)
            outbox.migrate(conn)
            return conn

        self._writer = await self._in_writer(setup)
        self._inline = self._connect()

    async def close(self) -> None:
        if self._appender is not None:
            await asyncio.gather(self._appender, return_exceptions=True)

        def close_writer() -> None:
            if self._writer is not None:
                self._writer.execute("PRAGMA optimize")
                self._writer.close()
                self._writer = None

        await self._in_writer(close_writer)
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        # A read still running in a reader thread (a cancelled read-ahead of ``iterate_bodies``
        # goes on in its thread) finishes before its connection is closed under it: closing a
        # connection another thread is using can crash the process.
        await asyncio.get_running_loop().run_in_executor(None, partial(self._reader_pool.shutdown, wait=True))
        with self._reader_connections_lock:
            for conn in self._reader_connections:
                conn.close()
            self._reader_connections.clear()
        self._writer_pool.shutdown(wait=True)

    # -- thread plumbing -----------------------------------------------------------------------
    async def _in_writer(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer_pool, fn)

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._reader_local.conn = conn
            with self._reader_connections_lock:
                self._reader_connections.append(conn)
        return conn

    def _scanner(self, mapped: bool = True) -> sqlite3.Connection:
        """A reader thread's connection for bulk reads in storage order, each row once (``scan`` for
        bulk export, ``iterate`` and ``iterate_bodies`` for whole-type readers). Its page cache is small
        and its own, so a bulk read neither grows the process by a full cache per reader thread nor
        evicts the pages that interactive reads keep hot. Unmapped (``mapped=False``, bulk export):
        the file is read rather than memory-mapped, so a long export's resident memory does not grow
        by the mapped store (up to 256 MB); mapped reads are faster for the shorter whole-type passes."""
        name = "scan_conn" if mapped else "unmapped_scan_conn"
        conn = getattr(self._reader_local, name, None)
        if conn is None:
            conn = self._connect()
            conn.execute(f"PRAGMA cache_size=-{SCAN_CACHE_KIB}")
            if not mapped:
                conn.execute("PRAGMA mmap_size=0")
            setattr(self._reader_local, name, conn)
            with self._reader_connections_lock:
                self._reader_connections.append(conn)
        return conn

    async def _in_reader(
        self, fn: Callable[[sqlite3.Connection], T], *, scan: bool = False, mapped: bool = True
    ) -> T:
        def run() -> T:
            conn = self._scanner(mapped) if scan else self._reader()
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, run)

    @property
    def _conn(self) -> sqlite3.Connection:
        assert self._inline is not None, "store is not open"
        return self._inline

    # -- writes --------------------------------------------------------------------------------
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteTransaction]:
        async with self._write_lock:
            tx = _SqliteTransaction(self)
            try:
                yield tx
            except BaseException:
                await tx._finish(commit=False)
                raise
            else:
                await tx._finish(commit=True)
                if tx._outbox:
                    self._outbox_committed()

    def _outbox_committed(self) -> None:
        signal, self._outbox_signal = self._outbox_signal, None
        if signal is not None:
            signal.set()

    async def append(self, resources: Sequence[tuple[StoredResource, Any]]) -> None:
        """Store new resources (version 1, fresh ids) durably, sharing the commit with concurrent calls."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._appends.append((resources, done))
        if self._appender is None or self._appender.done():
            self._appender = asyncio.create_task(self._commit_appends())
        await asyncio.shield(done)  # a cancelled caller does not cancel the others' commit

    async def _commit_appends(self) -> None:
        while self._appends:
            async with self._write_lock:  # queued appends gather while a transaction holds the writer
                batch, self._appends = self._appends, []
                if len(batch) > 1:
                    try:
                        await self._in_writer(partial(self._append_rows, [r for rs, _ in batch for r in rs]))
                    except Exception:  # one caller's bad row must not fail the others: each alone
                        pass
                    else:
                        for _, done in batch:
                            _settle(done, None)
                        continue
                for rows, done in batch:
                    try:
                        await self._in_writer(partial(self._append_rows, list(rows)))
                    except Exception as exc:
                        _settle(done, exc)
                    else:
                        _settle(done, None)

    def _append_rows(self, rows: list[tuple[StoredResource, Any]]) -> None:
        conn = self._writer
        assert conn is not None, "store is not open"
        conn.execute("BEGIN IMMEDIATE")
        try:
            indexed: list[tuple[int, Any]] = []
            for resource, index in rows:
                rid = _insert_new(conn, resource)
                if index is not None:
                    indexed.append((rid, index))
            index_tables.insert_new(conn, indexed)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    async def reindex(self, resource: StoredResource, index: Any) -> None:
        async with self.transaction() as tx:
            tx._pending.append(lambda conn: _reindex(conn, resource, index))

    async def import_versions(self, versions: Sequence[tuple[StoredResource, Any]]) -> None:
        async with self.transaction() as tx:
            tx._pending.append(partial(_import_all, versions=versions))

    # -- reads ---------------------------------------------------------------------------------
    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM resource WHERE type=? AND id=?", (resource_type, id)
        ).fetchone()
        return _row(row) if row else None

    async def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM history WHERE type=? AND id=? AND version=?",
            (resource_type, id, version),
        ).fetchone()
        return _row(row) if row else None

    async def history(self, query: HistoryQuery) -> HistoryPage:
        if _newest_only(query):
            # "What changed last?" (the consent and identity books ask it on every request): one
            # index probe, cheaper inline than the hop to a reader thread.
            return _history(self._conn, query)
        return await self._in_reader(lambda conn: _history(conn, query))

    async def search(self, query: Any) -> Any:
        from fhir_server.storage.sqlite.search_sql import run_search

        return await self._in_reader(lambda conn: run_search(conn, query))

    async def probe(
        self, namespace: str, key: str, resource_types: Sequence[str]
    ) -> tuple[dict[str, Any] | None, dict[str, tuple[str, int, str] | None]]:
        """One key/value entry and the newest version (id, version, lastUpdated) of each type, in one
        statement: what every secured request checks (its client's registry entry; whether identity
        links or Consents changed). One read transaction instead of three: each one started after a
        commit (the audit commits all the time) validates this connection's page cache again."""
        parts = ["SELECT -1, value, NULL, NULL FROM kv WHERE namespace=? AND key=?"]
        args: list[Any] = [namespace, key]
        for n, resource_type in enumerate(resource_types):
            parts.append(
                f"SELECT {n}, * FROM (SELECT id, version, last_updated FROM history WHERE type=?"
                " ORDER BY seq DESC LIMIT 1)"
            )
            args.append(resource_type)
        rows = self._conn.execute(" UNION ALL ".join(parts), args).fetchall()
        entry = None
        newest: dict[str, tuple[str, int, str] | None] = dict.fromkeys(resource_types)
        for n, first, version, last_updated in rows:
            if n < 0:
                entry = orjson.loads(first)
            else:
                newest[resource_types[n]] = (first, version, last_updated)
        return entry, newest

    async def scan(
        self, query: Any, after: int = 0, *, limit: int = 1000, max_bytes: int = 8 << 20
    ) -> ScanPage:
        from fhir_server.storage.sqlite.search_sql import run_scan

        return await self._in_reader(
            lambda conn: run_scan(conn, query, after, limit, max_bytes), scan=True, mapped=False
        )

    async def iterate(self, resource_type: str | None = None) -> AsyncIterator[StoredResource]:
        last = 0
        while True:
            batch = partial(_resource_batch, resource_type=resource_type, after=last)
            rows = await self._in_reader(batch, scan=True)
            if not rows:
                return
            for rid, stored in rows:
                last = rid
                yield stored

    async def iterate_bodies(self, resource_type: str, size: int = 2000) -> AsyncIterator[list[bytes]]:
        """The stored JSON of every current resource of one type, in batches; the next batch is read
        (in a reader thread) while the caller works on this one. For whole-type readers that need the
        body only: views and the analytics warehouse."""
        pending = asyncio.ensure_future(
            self._in_reader(partial(_body_batch, resource_type=resource_type, after=0, size=size), scan=True)
        )
        try:
            while True:
                last, bodies = await pending
                if not bodies:
                    return
                pending = asyncio.ensure_future(
                    self._in_reader(
                        partial(_body_batch, resource_type=resource_type, after=last, size=size), scan=True
                    )
                )
                yield bodies
        finally:
            pending.cancel()

    async def changes(self, after: int, limit: int = 500) -> list[tuple[int, StoredResource]]:
        return await self._in_reader(partial(_history_batch, after=after, size=limit))

    async def last_change(self) -> int:
        row = await self._in_reader(lambda conn: conn.execute("SELECT max(seq) FROM history").fetchone())
        return int(row[0] or 0)

    async def iterate_history(self) -> AsyncIterator[StoredResource]:
        last = 0
        while True:
            rows = await self._in_reader(partial(_history_batch, after=last))
            if not rows:
                return
            for seq, stored in rows:
                last = seq
                yield stored

    # -- outbox (``storage.sqlite.outbox``) -----------------------------------------------------
    def _snapshot(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on the inline connection inside one read transaction (one consistent picture)."""
        conn = self._conn
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    async def outbox_read(self, stream: str, after: int = 0, limit: int = 100) -> list[OutboxEvent]:
        return self._snapshot(lambda conn: outbox.read(conn, stream, after, limit))

    async def outbox_since(self, seq: int, limit: int = 1000) -> list[OutboxEvent]:
        return self._snapshot(lambda conn: outbox.since(conn, seq, limit))

    async def outbox_last(self, stream: str) -> int:
        return outbox.last(self._conn, stream)

    async def outbox_trim(self, stream: str, through: int) -> int:
        async with self.transaction() as tx:
            return await tx._run(lambda conn: outbox.trim(conn, stream, through))

    async def migrate_outbox(self) -> None:
        """Move events from an older outbox layout (schema versions 1 and 2), if any are left."""
        await self._in_writer(lambda: outbox.migrate(self._writer))  # type: ignore[arg-type]

    async def outbox_wait(self, after_seq: int, timeout: float) -> int:
        if self._outbox_signal is None:
            self._outbox_signal = asyncio.Event()
        signal = self._outbox_signal
        latest = outbox.latest(self._conn)
        if latest > after_seq or timeout <= 0:
            return latest
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signal.wait(), timeout)
        return outbox.latest(self._conn)

    # -- key/value -----------------------------------------------------------------------------
    async def kv_get(self, namespace: str, key: str) -> dict[str, Any] | None:
        row = self._conn.execute(
            "SELECT value FROM kv WHERE namespace=? AND key=?", (namespace, key)
        ).fetchone()
        return orjson.loads(row[0]) if row else None

    async def kv_put(self, namespace: str, key: str, value: dict[str, Any]) -> None:
        data = orjson.dumps(value)
        async with self.transaction() as tx:
            tx._pending.append(
                lambda conn: conn.execute(
                    "INSERT INTO kv(namespace, key, value) VALUES(?,?,?) "
                    "ON CONFLICT(namespace, key) DO UPDATE SET value=excluded.value",
                    (namespace, key, data),
                )
            )

    async def kv_delete(self, namespace: str, key: str) -> bool:
        async with self.transaction() as tx:
            cursor = await tx._run(
                lambda conn: conn.execute("DELETE FROM kv WHERE namespace=? AND key=?", (namespace, key))
            )
        return bool(cursor.rowcount)

    async def kv_list(self, namespace: str) -> list[tuple[str, dict[str, Any]]]:
        rows = self._conn.execute(
            "SELECT key, value FROM kv WHERE namespace=? ORDER BY key", (namespace,)
        ).fetchall()
        return [(key, orjson.loads(value)) for key, value in rows]

    async def kv_compare_and_set(
        self, namespace: str, key: str, expected: dict[str, Any] | None, value: dict[str, Any] | None
    ) -> bool:
        data = orjson.dumps(value) if value is not None else None

        def swap(conn: sqlite3.Connection) -> bool:
            # Inside BEGIN IMMEDIATE: the write lock is held, also against other processes.
            where = (namespace, key)
            row = conn.execute("SELECT value FROM kv WHERE namespace=? AND key=?", where).fetchone()
            if (orjson.loads(row[0]) if row else None) != expected:
                return False
            if data is None:
                conn.execute("DELETE FROM kv WHERE namespace=? AND key=?", (namespace, key))
            else:
                conn.execute(
                    "INSERT INTO kv(namespace, key, value) VALUES(?,?,?) "
                    "ON CONFLICT(namespace, key) DO UPDATE SET value=excluded.value",
                    (namespace, key, data),
                )
            return True

        async with self.transaction() as tx:
            return await tx._run(swap)


def _settle(done: asyncio.Future[None], error: Exception | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


class _SqliteTransaction:
    """A write transaction on the writer thread; writes are buffered until the next hop."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.store = store
        self._pending: list[Callable[[sqlite3.Connection], Any]] = []
        self._begun = False
        self._outbox = False

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        pending, self._pending = self._pending, []
        begin = not self._begun
        self._begun = True
        conn = self._store._writer
        assert conn is not None, "store is not open"

        def work() -> T:
            if begin:
                conn.execute("BEGIN IMMEDIATE")
            for step in pending:
                step(conn)
            return fn(conn)

        return await self._store._in_writer(work)

    async def _finish(self, commit: bool) -> None:
        if not self._begun and not self._pending:
            return
        if commit:
            await self._run(lambda conn: conn.execute("COMMIT"))
        else:
            self._pending.clear()
            # A task cancelled while its COMMIT ran in the writer thread finds no transaction left.
            await self._run(lambda conn: conn.execute("ROLLBACK") if conn.in_transaction else None)

    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        row = await self._run(
            lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM resource WHERE type=? AND id=?", (resource_type, id)
            ).fetchone()
        )
        return _row(row) if row else None

    async def search(self, query: Any) -> Any:
        from fhir_server.storage.sqlite.search_sql import run_search

        return await self._run(lambda conn: run_search(conn, query))

    async def look_up(
        self, reads: Sequence[tuple[str, str]], queries: Sequence[Any]
    ) -> tuple[list[StoredResource | None], list[Any]]:
        """Several reads and searches in one trip to the writer thread (the server's own bookkeeping:
        the identity layer's look-ups for a new Patient), each answered as ``read``/``search`` would."""
        from fhir_server.storage.sqlite.search_sql import run_search

        def work(conn: sqlite3.Connection) -> tuple[list[StoredResource | None], list[Any]]:
            found = []
            for resource_type, id_ in reads:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM resource WHERE type=? AND id=?", (resource_type, id_)
                ).fetchone()
                found.append(_row(row) if row else None)
            return found, [run_search(conn, query) for query in queries]

        return await self._run(work)

    async def put(self, resource: StoredResource, index: Any) -> StoredResource:
        self._pending.append(lambda conn: _put(conn, resource, index))
        return resource

    async def delete(self, tombstone: StoredResource) -> None:
        self._pending.append(lambda conn: _put(conn, tombstone, None))

    async def outbox_put(self, stream: str, payload: dict[str, Any]) -> None:
        await self.outbox_put_many((stream,), payload)

    async def outbox_put_many(self, streams: Sequence[str], payload: dict[str, Any]) -> None:
        if not streams:
            return
        data, recorded, names = orjson.dumps(payload), instant_now(), tuple(streams)
        self._outbox = True
        self._pending.append(lambda conn: outbox.put(conn, names, recorded, data))

    async def kv_get(self, namespace: str, key: str) -> dict[str, Any] | None:
        row = await self._run(
            lambda conn: conn.execute(
                "SELECT value FROM kv WHERE namespace=? AND key=?", (namespace, key)
            ).fetchone()
        )
        return orjson.loads(row[0]) if row else None

    async def kv_put(self, namespace: str, key: str, value: dict[str, Any] | None) -> None:
        if value is None:
            self._pending.append(
                lambda conn: conn.execute("DELETE FROM kv WHERE namespace=? AND key=?", (namespace, key))
            )
            return
        data = orjson.dumps(value)
        self._pending.append(
            lambda conn: conn.execute(
                "INSERT INTO kv(namespace, key, value) VALUES(?,?,?) "
                "ON CONFLICT(namespace, key) DO UPDATE SET value=excluded.value",
                (namespace, key, data),
            )
        )


def _insert_new(conn: sqlite3.Connection, resource: StoredResource) -> int:
    """A resource under a new id (``append``): a plain INSERT, so an id already stored fails instead
    of replacing it; its ``rid`` is new (rows are never removed from ``resource``), so no index rows
    exist to delete."""
    r = resource
    fields = (r.resource_type, r.id, r.version, r.last_updated, r.method, r.body)
    (rid,) = conn.execute(
        "INSERT INTO resource(type, id, version, last_updated, method, body) VALUES(?,?,?,?,?,?)"
        " RETURNING rid",
        fields,
    ).fetchone()
    conn.execute(
        "INSERT INTO history(rid, type, id, version, last_updated, method, body) VALUES(?,?,?,?,?,?,?)",
        (rid, *fields),
    )
    return int(rid)


def _put(conn: sqlite3.Connection, resource: StoredResource, index: Any) -> None:
    method: Method = resource.method
    (rid,) = conn.execute(
        "INSERT INTO resource(type, id, version, last_updated, method, body) VALUES(?,?,?,?,?,?) "
        "ON CONFLICT(type, id) DO UPDATE SET version=excluded.version, "
        "last_updated=excluded.last_updated, method=excluded.method, body=excluded.body RETURNING rid",
        (resource.resource_type, resource.id, resource.version, resource.last_updated, method, resource.body),
    ).fetchone()
    conn.execute(
        "INSERT INTO history(rid, type, id, version, last_updated, method, body) VALUES(?,?,?,?,?,?,?)",
        (
            rid,
            resource.resource_type,
            resource.id,
            resource.version,
            resource.last_updated,
            method,
            resource.body,
        ),
    )
    if method == "DELETE" or index is None:
        index_tables.delete_index(conn, rid)
    else:
        index_tables.write_index(conn, rid, resource.resource_type, index)


def _import(conn: sqlite3.Connection, resource: StoredResource, index: Any) -> None:
    row = conn.execute(
        "SELECT rid, version FROM resource WHERE type=? AND id=?", (resource.resource_type, resource.id)
    ).fetchone()
    if row is None or row[1] < resource.version:
        _put(conn, resource, index)  # becomes the current version
        return
    conn.execute(
        "INSERT INTO history(rid, type, id, version, last_updated, method, body) VALUES(?,?,?,?,?,?,?)",
        (
            row[0],
            resource.resource_type,
            resource.id,
            resource.version,
            resource.last_updated,
            resource.method,
            resource.body,
        ),
    )


def _import_all(conn: sqlite3.Connection, versions: Sequence[tuple[StoredResource, Any]]) -> None:
    for resource, index in versions:
        _import(conn, resource, index)


def _reindex(conn: sqlite3.Connection, resource: StoredResource, index: Any) -> None:
    row = conn.execute(
        "SELECT rid, version FROM resource WHERE type=? AND id=?", (resource.resource_type, resource.id)
    ).fetchone()
    # Only the version that was indexed; a newer write has already indexed itself.
    if row and row[1] == resource.version:
        index_tables.write_index(conn, row[0], resource.resource_type, index)


def _newest_only(query: HistoryQuery) -> bool:
    """A page of the few newest versions, without a total: answered from the end of an index."""
    return (
        query.count <= 4
        and query.before_seq is not None
        and query.id is None
        and query.since is None
        and query.at is None
    )


def _history(conn: sqlite3.Connection, query: HistoryQuery) -> HistoryPage:
    where: list[str] = []
    args: list[Any] = []
    if query.resource_type is not None:
        where.append("h.type=?")
        args.append(query.resource_type)
    if query.id is not None:
        where.append("h.id=?")
        args.append(query.id)
    if query.since is not None:
        where.append("h.last_updated>=?")
        args.append(query.since)
    if query.at is not None:
        # The versions current at ``at``: written at or before it, and not yet replaced by then.
        where.append("h.last_updated<=?")
        args.append(query.at)
        where.append(
            "NOT EXISTS(SELECT 1 FROM history n "
            "WHERE n.rid=h.rid AND n.version>h.version AND n.last_updated<=?)"
        )
        args.append(query.at)
    filters = " AND ".join(where) or "1"
    total = None
    if query.id is not None or query.before_seq is None:
        total = conn.execute(f"SELECT count(*) FROM history h WHERE {filters}", args).fetchone()[0]
    page_filters = filters
    page_args = list(args)
    if query.before_seq is not None:
        page_filters += " AND h.seq<?"
        page_args.append(query.before_seq)
    rows = conn.execute(
        f"SELECT h.seq, h.type, h.id, h.version, h.last_updated, h.method, h.body FROM history h "
        f"WHERE {page_filters} ORDER BY h.seq DESC LIMIT ?",
        [*page_args, query.count + 1],
    ).fetchall()
    more = len(rows) > query.count
    rows = rows[: query.count]
    entries = [_row(r[1:]) for r in rows]
    next_seq = rows[-1][0] if more and rows else None
    return HistoryPage(entries=entries, next_before_seq=next_seq, total=total)


def _resource_batch(
    conn: sqlite3.Connection, resource_type: str | None, after: int, size: int = 500
) -> list[tuple[int, StoredResource]]:
    if resource_type is None:
        rows = conn.execute(
            f"SELECT rid, {_COLUMNS} FROM resource WHERE rid>? AND method!='DELETE' ORDER BY rid LIMIT ?",
            (after, size),
        ).fetchall()
    else:
        rows = conn.execute(
            f"SELECT rid, {_COLUMNS} FROM resource WHERE type=? AND rid>? AND method!='DELETE' "
            "ORDER BY rid LIMIT ?",
            (resource_type, after, size),
        ).fetchall()
    return [(r[0], _row(r[1:])) for r in rows]


def _body_batch(
    conn: sqlite3.Connection, resource_type: str, after: int, size: int
) -> tuple[int, list[bytes]]:
    rows = conn.execute(
        "SELECT rid, body FROM resource WHERE type=? AND rid>? AND method!='DELETE' ORDER BY rid LIMIT ?",
        (resource_type, after, size),
    ).fetchall()
    return (rows[-1][0] if rows else after), [bytes(r[1]) for r in rows]


def _history_batch(conn: sqlite3.Connection, after: int, size: int = 500) -> list[tuple[int, StoredResource]]:
    rows = conn.execute(
        f"SELECT seq, {_COLUMNS} FROM history WHERE seq>? ORDER BY seq LIMIT ?", (after, size)
    ).fetchall()
    return [(r[0], _row(r[1:])) for r in rows]
