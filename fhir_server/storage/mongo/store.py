"""The production store on MongoDB (``pymongo.AsyncMongoClient``), or on the in-process test double.

Write transactions are serialised within one server process (like the embedded store) and run as a
MongoDB multi-document transaction, so they commit together or not at all across processes too.
Writes are buffered and sent together with the next search or the commit. Every step of a
transaction is logged; when the server reports a transient error (a write conflict with another
process, a primary step-down) the transaction is started again and the log replayed: reads and
searches are re-run and must give the same answers (otherwise the caller's decisions may be stale
and the transaction fails with 409), and buffered writes are sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError
from pymongo.read_concern import ReadConcern

from fhir_server.interactions.errors import FhirError
from fhir_server.storage.base import (
    HistoryPage,
    HistoryQuery,
    OutboxEvent,
    ScanPage,
    StoredResource,
    instant_now,
)
from fhir_server.storage.mongo import outbox, schema
from fhir_server.storage.mongo.connection import check_replica_set, connect
from fhir_server.storage.mongo.documents import (
    RESOURCE_FIELDS,
    history_document,
    index_update,
    resource_fields,
    resource_key,
    stored,
)

_RETRIES = 5
_BATCH = 500
_NOT_DELETED = {"$ne": "DELETE"}


def _transient(exc: PyMongoError) -> bool:
    return exc.has_error_label("TransientTransactionError")


def _conflict(diagnostics: str) -> FhirError:
    return FhirError(409, diagnostics, code="conflict")


class MongoStore:
    def __init__(
        self,
        url: str,
        *,
        client: Any | None = None,
        database: str | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        self.url = url
        self._timeout = timeout_seconds
        self._client = client
        self._database_name = database
        self._lock = asyncio.Lock()
        self._double = url.startswith("mongomock://")
        # Set (and replaced) whenever this process commits outbox events: wakes ``outbox_wait``.
        self._outbox_signal: asyncio.Event | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        if self._client is None:
            self._client, name = connect(self.url, self._timeout)
            self._database_name = self._database_name or name
        self._database_name = self._database_name or "termtem"
        check_replica_set(await self._client.admin.command("hello"), self.url)
        db = self._client[self._database_name]
        self.resources = db[schema.RESOURCES]
        self.history_collection = db[schema.HISTORY]
        self.kv = db[schema.KV]
        self.counters = db[schema.COUNTERS]
        self.outbox = db[schema.OUTBOX]
        self.outbox_marks = db[schema.OUTBOX_MARKS]
        await outbox.migrate(self)  # first: it drops an index of the older layout
        for collection, _, keys, options in schema.index_specs():
            await db[collection].create_index(keys, **options)
        await self.kv.create_index([("n", 1), ("k", 1)], name="namespace_key", unique=True)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def client(self) -> Any:
        """The (async) client: the test double exposes fault injection through it."""
        return self._client

    # -- writes --------------------------------------------------------------------------------
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_MongoTransaction]:
        async with self._lock:
            tx = _MongoTransaction(self)
            try:
                yield tx
            except BaseException:
                await tx._rollback()
                raise
            else:
                await tx._commit()
                if tx._outbox_used:
                    signal, self._outbox_signal = self._outbox_signal, None
                    if signal is not None:
                        signal.set()

    async def append(self, resources: Sequence[tuple[StoredResource, Any]]) -> None:
        """New resources (version 1, fresh ids), durable on return: one transaction per call here."""
        async with self.transaction() as tx:
            for resource, index in resources:
                await tx.put(resource, index)

    async def reindex(self, resource: StoredResource, index: Any) -> None:
        # One document, so atomic on its own; only the version that was indexed is touched.
        await self.resources.update_one(
            {"_id": resource_key(resource.resource_type, resource.id), "v": resource.version,
             "m": _NOT_DELETED},
            index_update(index),
        )

    async def import_versions(self, versions: Sequence[tuple[StoredResource, Any]]) -> None:
        async with self.transaction() as tx:
            for resource, index in versions:
                tx._pending.append(("import", resource, index))

    # -- reads ---------------------------------------------------------------------------------
    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        doc = await self.resources.find_one({"_id": resource_key(resource_type, id)}, RESOURCE_FIELDS)
        return stored(doc) if doc else None

    async def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        doc = await self.history_collection.find_one({"t": resource_type, "i": id, "v": version})
        return stored(doc) if doc else None

    async def history(self, query: HistoryQuery) -> HistoryPage:
        return await _history(self.history_collection, query)

    async def search(self, query: Any) -> Any:
        from fhir_server.storage.mongo.search import run_search

        if self._double:
            return await run_search(self.resources, query, None)
        # One snapshot for the page, the total and the includes.
        assert self._client is not None, "store is not open"
        session = self._client.start_session(snapshot=True)
        try:
            return await run_search(self.resources, query, session)
        finally:
            await session.end_session()

    async def scan(
        self, query: Any, after: int = 0, *, limit: int = 1000, max_bytes: int = 8 << 20
    ) -> ScanPage:
        from fhir_server.storage.mongo.search import run_scan

        return await run_scan(self.resources, query, after, limit, max_bytes)

    async def iterate(self, resource_type: str | None = None) -> AsyncIterator[StoredResource]:
        last = 0
        while True:
            flt: dict[str, Any] = {"m": _NOT_DELETED, "rid": {"$gt": last}}
            if resource_type is not None:
                flt["t"] = resource_type
            docs = await self.resources.find(flt, RESOURCE_FIELDS).sort([("rid", 1)]).limit(_BATCH).to_list()
            if not docs:
                return
            for doc in docs:
                last = doc["rid"]
                yield stored(doc)

    async def changes(self, after: int, limit: int = 500) -> list[tuple[int, StoredResource]]:
        query = self.history_collection.find({"_id": {"$gt": after}}).sort([("_id", 1)]).limit(limit)
        return [(int(doc["_id"]), stored(doc)) for doc in await query.to_list()]

    async def last_change(self) -> int:
        query = self.history_collection.find({}, {"_id": 1}).sort([("_id", -1)]).limit(1)
        docs = await query.to_list()
        return int(docs[0]["_id"]) if docs else 0

    async def iterate_history(self) -> AsyncIterator[StoredResource]:
        last = 0
        while True:
            docs = await self.history_collection.find({"_id": {"$gt": last}}).sort([("_id", 1)]).limit(
                _BATCH).to_list()
            if not docs:
                return
            for doc in docs:
                last = doc["_id"]
                yield stored(doc)

    # -- outbox (``storage.mongo.outbox``) ------------------------------------------------------
    async def outbox_read(self, stream: str, after: int = 0, limit: int = 100) -> list[OutboxEvent]:
        return await outbox.read(self, stream, after, limit)

    async def outbox_since(self, seq: int, limit: int = 1000) -> list[OutboxEvent]:
        return await outbox.since(self, seq, limit)

    async def outbox_last(self, stream: str) -> int:
        return await outbox.last(self, stream)

    async def outbox_trim(self, stream: str, through: int) -> int:
        return await outbox.trim(self, stream, through)

    async def migrate_outbox(self) -> None:
        """Move events from the older outbox layout (schema version 2), if any are left."""
        await outbox.migrate(self)

    async def outbox_wait(self, after_seq: int, timeout: float) -> int:
        if self._outbox_signal is None:
            self._outbox_signal = asyncio.Event()
        signal = self._outbox_signal
        latest = await outbox.latest(self)
        if latest > after_seq or timeout <= 0:
            return latest
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signal.wait(), timeout)
        return await outbox.latest(self)

    # -- key/value -----------------------------------------------------------------------------
    async def kv_get(self, namespace: str, key: str) -> dict[str, Any] | None:
        doc = await self.kv.find_one({"n": namespace, "k": key})
        return orjson.loads(doc["val"]) if doc else None

    async def kv_put(self, namespace: str, key: str, value: dict[str, Any]) -> None:
        # Stored as bytes: JSON keys such as "$set" or "a.b" are data here, never update operators.
        await self.kv.update_one({"n": namespace, "k": key},
                                 {"$set": {"val": orjson.dumps(value)}}, upsert=True)

    async def kv_delete(self, namespace: str, key: str) -> bool:
        result = await self.kv.delete_one({"n": namespace, "k": key})
        return bool(result.deleted_count)

    async def kv_list(self, namespace: str) -> list[tuple[str, dict[str, Any]]]:
        docs = await self.kv.find({"n": namespace}).sort([("k", 1)]).to_list()
        return [(doc["k"], orjson.loads(doc["val"])) for doc in docs]

    async def kv_compare_and_set(
        self, namespace: str, key: str, expected: dict[str, Any] | None, value: dict[str, Any] | None
    ) -> bool:
        # Compare by value in Python, then write only if the stored bytes are still the ones compared
        # (a single-document conditional write is atomic); a concurrent change makes us look again.
        where = {"n": namespace, "k": key}
        while True:
            doc = await self.kv.find_one(where)
            if (orjson.loads(doc["val"]) if doc else None) != expected:
                return False
            if doc is None:
                if value is None:
                    return True
                try:
                    await self.kv.insert_one({**where, "val": orjson.dumps(value)})
                    return True
                except DuplicateKeyError:
                    continue
            same = {**where, "val": doc["val"]}
            if value is None:
                if (await self.kv.delete_one(same)).deleted_count:
                    return True
            elif (await self.kv.update_one(same, {"$set": {"val": orjson.dumps(value)}})).matched_count:
                return True


Pending = tuple[str, StoredResource, Any]  # ("put" | "import", version, index rows)


class _MongoTransaction:
    """One write transaction: buffered writes, a session transaction, and a log to replay on retry."""

    def __init__(self, store: MongoStore) -> None:
        self._store = store
        self.store = store
        self._session: Any = None
        self._pending: list[Pending] = []
        self._log: list[tuple[str, Any, Any]] = []
        self._needs_replay = False
        self._outbox: list[outbox.Recording] = []
        self._outbox_used = False
        self._kv: dict[tuple[str, str], dict[str, Any] | None] = {}  # unwritten key/value changes

    # -- the StoreTransaction face -------------------------------------------------------------
    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        for _, resource, _ in reversed(self._pending):
            if resource.resource_type == resource_type and resource.id == id:
                return resource
        key = resource_key(resource_type, id)
        found = await self._run(lambda: self._read(key))
        self._log.append(("read", key, found))
        return found

    async def search(self, query: Any) -> Any:
        from fhir_server.storage.mongo.search import run_search

        await self._flush()
        page = await self._run(lambda: run_search(self._store.resources, query, self._session))
        self._log.append(("search", query, _fingerprint(page)))
        return page

    async def put(self, resource: StoredResource, index: Any) -> StoredResource:
        self._pending.append(("put", resource, index))
        return resource

    async def delete(self, tombstone: StoredResource) -> None:
        self._pending.append(("put", tombstone, None))

    async def outbox_put(self, stream: str, payload: dict[str, Any]) -> None:
        await self.outbox_put_many((stream,), payload)

    async def outbox_put_many(self, streams: Sequence[str], payload: dict[str, Any]) -> None:
        if not streams:
            return
        self._outbox.append((tuple(dict.fromkeys(streams)), instant_now(), orjson.dumps(payload)))
        self._outbox_used = True

    async def kv_get(self, namespace: str, key: str) -> dict[str, Any] | None:
        if (namespace, key) in self._kv:
            return self._kv[(namespace, key)]
        where = {"n": namespace, "k": key}
        doc = await self._run(lambda: self._store.kv.find_one(where, session=self._session))
        value = orjson.loads(doc["val"]) if doc else None
        self._log.append(("kv-read", (namespace, key), value))
        return value

    async def kv_put(self, namespace: str, key: str, value: dict[str, Any] | None) -> None:
        self._kv[(namespace, key)] = value

    # -- session plumbing ----------------------------------------------------------------------
    async def _begin(self) -> None:
        if self._session is None:
            self._session = self._store.client.start_session()
        if not self._session.in_transaction:
            # Snapshot reads: everything the transaction reads comes from one point in time.
            # Writes use the client's write concern (w: majority, journaled unless the URL says otherwise).
            await self._session.start_transaction(read_concern=ReadConcern("snapshot"))

    async def _run(self, step: Any) -> Any:
        """Run ``step`` in the transaction, restarting and replaying on transient errors."""
        attempt = 0
        while True:
            try:
                if self._needs_replay:
                    await self._replay()
                await self._begin()
                return await step()
            except PyMongoError as exc:
                if not _transient(exc) or attempt >= _RETRIES:
                    raise
                attempt += 1
                await self._abort()
                self._needs_replay = True
                await asyncio.sleep(0.005 * 2**attempt)

    async def _replay(self) -> None:
        await self._begin()
        for kind, subject, result in self._log:
            if kind == "read":
                if _version_of(await self._read(subject)) != _version_of(result):
                    raise _conflict(f"{subject} was changed by a concurrent transaction; retry the request")
            elif kind == "search":
                from fhir_server.storage.mongo.search import run_search

                page = await run_search(self._store.resources, subject, self._session)
                if _fingerprint(page) != result:
                    raise _conflict("resources matching the search changed during the transaction; retry")
            elif kind == "outbox":
                await self._write_outbox(subject)
            elif kind == "kv-read":
                doc = await self._store.kv.find_one({"n": subject[0], "k": subject[1]}, session=self._session)
                if (orjson.loads(doc["val"]) if doc else None) != result:
                    raise _conflict("server state read by the transaction changed; retry the request")
            elif kind == "kv":
                await self._write_kv(subject)
            else:
                await self._write(subject)
        self._needs_replay = False

    async def _abort(self) -> None:
        if self._session is not None and self._session.in_transaction:
            with contextlib.suppress(PyMongoError):  # the server may have aborted it already
                await self._session.abort_transaction()

    async def _rollback(self) -> None:
        self._pending.clear()
        self._kv.clear()
        self._outbox.clear()
        self._outbox_used = False
        await self._abort()
        await self._end()

    async def _end(self) -> None:
        if self._session is not None:
            await self._session.end_session()
            self._session = None

    async def _commit(self) -> None:
        try:
            await self._flush()
            attempt = 0
            while self._session is not None and self._session.in_transaction:
                try:
                    await self._session.commit_transaction()
                except PyMongoError as exc:
                    attempt += 1
                    if attempt > _RETRIES:
                        raise
                    if exc.has_error_label("UnknownTransactionCommitResult"):
                        continue  # committing again is safe: the server answers with the outcome
                    if not _transient(exc):
                        raise
                    await self._abort()
                    self._needs_replay = True
                    await self._run(_nothing)
        except BaseException:
            await self._abort()
            raise
        finally:
            await self._end()

    # -- the work ------------------------------------------------------------------------------
    async def _read(self, key: str) -> StoredResource | None:
        doc = await self._store.resources.find_one({"_id": key}, RESOURCE_FIELDS, session=self._session)
        return stored(doc) if doc else None

    async def _flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            await self._run(lambda: self._write(batch))
            self._log.append(("write", batch, None))
        if self._outbox:
            events, self._outbox = self._outbox, []
            await self._run(lambda: self._write_outbox(events))
            self._log.append(("outbox", events, None))
        if self._kv:
            changes, self._kv = self._kv, {}
            await self._run(lambda: self._write_kv(changes))
            self._log.append(("kv", changes, None))

    async def _write_kv(self, changes: dict[tuple[str, str], dict[str, Any] | None]) -> None:
        for (namespace, key), value in changes.items():
            where = {"n": namespace, "k": key}
            if value is None:
                await self._store.kv.delete_one(where, session=self._session)
            else:
                await self._store.kv.update_one(
                    where, {"$set": {"val": orjson.dumps(value)}}, upsert=True, session=self._session
                )

    async def _write_outbox(self, recordings: list[outbox.Recording]) -> None:
        await outbox.record(self._store, self._session, recordings)

    async def _write(self, batch: list[Pending]) -> None:
        store, session = self._store, self._session
        counter = await store.counters.find_one_and_update(
            {"_id": schema.SEQUENCE}, {"$inc": {"n": len(batch)}}, upsert=True,
            return_document=ReturnDocument.AFTER, session=session,
        )
        first = counter["n"] - len(batch) + 1
        for offset, (kind, resource, index) in enumerate(batch):
            if kind == "import":
                await self._import(first + offset, resource, index)
            else:
                await self._put(first + offset, resource, index)
        await store.history_collection.insert_many(
            [history_document(first + n, resource) for n, (_, resource, _) in enumerate(batch)],
            session=session,
        )

    async def _put(self, seq: int, resource: StoredResource, index: Any) -> None:
        key = resource_key(resource.resource_type, resource.id)
        rows = None if resource.deleted else index
        update = index_update(rows)
        if resource.version == 1:
            doc = {"_id": key, **resource_fields(resource), "rid": seq, **update.get("$set", {})}
            try:
                await self._store.resources.insert_one(doc, session=self._session)
            except DuplicateKeyError as exc:
                raise _conflict(f"{key} already exists") from exc
            return
        update["$set"] = {**resource_fields(resource), **update.get("$set", {})}
        result = await self._store.resources.update_one(
            {"_id": key, "v": resource.version - 1}, update, session=self._session
        )
        if result.matched_count != 1:
            raise _conflict(f"{key} is not at version {resource.version - 1}; retry the request")

    async def _import(self, seq: int, resource: StoredResource, index: Any) -> None:
        key = resource_key(resource.resource_type, resource.id)
        current = await self._store.resources.find_one({"_id": key}, {"v": 1}, session=self._session)
        update = index_update(None if resource.deleted else index)
        fields = {**resource_fields(resource), **update.get("$set", {})}
        if current is None:
            await self._store.resources.insert_one({"_id": key, **fields, "rid": seq}, session=self._session)
        elif current["v"] < resource.version:
            update["$set"] = fields
            await self._store.resources.update_one({"_id": key}, update, session=self._session)


async def _nothing() -> None:
    return None


def _version_of(resource: StoredResource | None) -> tuple[int, str] | None:
    return None if resource is None else (resource.version, resource.method)


def _fingerprint(page: Any) -> list[tuple[str, str, int]]:
    return [(m.resource_type, m.id, m.version) for m in page.matches]


async def _history(collection: Any, query: HistoryQuery) -> HistoryPage:
    flt: dict[str, Any] = {}
    if query.resource_type is not None:
        flt["t"] = query.resource_type
    if query.id is not None:
        flt["i"] = query.id
    page_flt = dict(flt)
    if query.before_seq is not None:
        page_flt["_id"] = {"$lt": query.before_seq}
    want_total = query.id is not None or query.before_seq is None
    if query.at is None:
        if query.since is not None:
            flt["lu"] = page_flt["lu"] = {"$gte": query.since}
        total = await collection.count_documents(flt) if want_total else None
        docs = await collection.find(page_flt).sort([("_id", -1)]).limit(query.count + 1).to_list()
    else:
        # The versions current at ``at``: per resource, the newest one written at or before it.
        def pipeline(match: dict[str, Any]) -> list[dict[str, Any]]:
            after = [{"$match": {"lu": {"$gte": query.since}}}] if query.since is not None else []
            before = [{"$match": {"_id": match["_id"]}}] if "_id" in match else []
            return [
                {"$match": {**flt, "lu": {"$lte": query.at}}},
                {"$sort": {"_id": -1}},
                {"$group": {"_id": {"t": "$t", "i": "$i"}, "d": {"$first": "$$ROOT"}}},
                {"$replaceRoot": {"newRoot": "$d"}},
                *after,
                *before,
            ]

        total = None
        if want_total:
            counted = await (await collection.aggregate([*pipeline(flt), {"$count": "n"}])).to_list()
            total = counted[0]["n"] if counted else 0
        docs = await (await collection.aggregate(
            [*pipeline(page_flt), {"$sort": {"_id": -1}}, {"$limit": query.count + 1}]
        )).to_list()
    more = len(docs) > query.count
    docs = docs[: query.count]
    return HistoryPage(
        entries=[stored(d) for d in docs],
        next_before_seq=docs[-1]["_id"] if more and docs else None,
        total=total,
    )
