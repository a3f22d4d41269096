"""An in-process test double for the slice of ``pymongo.AsyncMongoClient`` the store uses.

Build machines cannot run a MongoDB server, so ``mongomock://NAME/DB`` URLs run the Mongo store on
mongomock (synchronous, in memory) behind this async adapter. mongomock has no sessions, so the
adapter gives transactions their atomicity with an undo log: the first write to a document inside a
transaction saves its previous state, and an abort puts every saved state back. It does not give
isolation (readers outside a transaction see uncommitted writes), write-conflict detection, majority
write concern or journaling: those are only checked against a real server.

Stores are shared per NAME within one process, so two ``mongomock://NAME/...`` stores (for example
both ends of ``termtem copy``) see the same data, as two clients of one server would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from pymongo.errors import OperationFailure

_SERVERS: dict[str, Any] = {}
_SERVERS_LOCK = threading.Lock()


def _server(name: str) -> Any:
    from mongomock.store import ServerStore

    with _SERVERS_LOCK:
        return _SERVERS.setdefault(name, ServerStore())


def forget(name: str) -> None:
    """Drop the in-memory server called ``name`` (tests clean up after themselves)."""
    with _SERVERS_LOCK:
        _SERVERS.pop(name, None)


async def _io() -> None:
    """Let other tasks run, as a real client does while it waits for the server."""
    await asyncio.sleep(0)


class DoubleSession:
    """A session whose transaction is an undo log over the documents it wrote."""

    def __init__(self) -> None:
        self.in_transaction = False
        self._undo: dict[tuple[str, Any], tuple[Any, dict[str, Any] | None]] = {}

    def saw(self, collection: DoubleCollection, doc_id: Any, before: dict[str, Any] | None) -> None:
        if self.in_transaction:
            self._undo.setdefault((collection.name, doc_id), (collection, before))

    async def start_transaction(self, **_: Any) -> None:
        if self.in_transaction:
            raise OperationFailure("Transaction already in progress")
        self.in_transaction = True
        self._undo = {}

    async def commit_transaction(self) -> None:
        self.in_transaction = False
        self._undo = {}

    async def abort_transaction(self) -> None:
        undo, self._undo = self._undo, {}
        self.in_transaction = False
        for (_, doc_id), (collection, before) in reversed(list(undo.items())):
            if before is None:
                collection.raw.delete_one({"_id": doc_id})
            else:
                collection.raw.replace_one({"_id": doc_id}, before, upsert=True)

    async def end_session(self) -> None:
        if self.in_transaction:
            await self.abort_transaction()


class DoubleCursor:
    """A lazily run ``find`` or ``aggregate`` with the cursor methods the store calls."""

    def __init__(self, run: Any) -> None:
        self._run = run
        self._sort: list[tuple[str, int]] | None = None
        self._limit = 0

    def sort(self, keys: list[tuple[str, int]]) -> DoubleCursor:
        self._sort = keys
        return self

    def limit(self, n: int) -> DoubleCursor:
        self._limit = n
        return self

    def _docs(self) -> Iterator[dict[str, Any]]:
        cursor = self._run()
        if self._sort:
            cursor = cursor.sort(self._sort)
        if self._limit:
            cursor = cursor.limit(self._limit)
        return iter(cursor)

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        await _io()
        docs = list(self._docs())
        return docs if length is None else docs[:length]

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        for doc in self._docs():
            yield doc


class DoubleCollection:
    def __init__(self, raw: Any, failures: list[str]) -> None:
        self.raw = raw
        self.name: str = raw.name
        self._failures = failures

    def _maybe_fail(self, session: DoubleSession | None) -> None:
        # Fault injection: make the next write inside a transaction fail as a real server can
        # (a write conflict), so the store's retry path is exercised without a server.
        if session is not None and session.in_transaction and self._failures:
            label = self._failures.pop(0)
            raise OperationFailure("injected write conflict", 112, {"errorLabels": [label]})

    def _before(self, session: DoubleSession | None, flt: dict[str, Any]) -> dict[str, Any] | None:
        doc = self.raw.find_one(flt)
        if session is not None and doc is not None:
            session.saw(self, doc["_id"], doc)
        return doc

    async def find_one(self, flt: dict[str, Any], projection: Any = None, *, session: Any = None,
                       **_: Any) -> dict[str, Any] | None:
        await _io()
        return self.raw.find_one(flt, projection)  # type: ignore[no-any-return]

    def find(self, flt: dict[str, Any], projection: Any = None, *, session: Any = None,
             **_: Any) -> DoubleCursor:
        return DoubleCursor(lambda: self.raw.find(flt, projection))

    async def aggregate(self, pipeline: list[dict[str, Any]], *, session: Any = None,
                        **_: Any) -> DoubleCursor:
        await _io()
        return DoubleCursor(lambda: self.raw.aggregate(pipeline))

    async def count_documents(self, flt: dict[str, Any], *, session: Any = None, **_: Any) -> int:
        await _io()
        return self.raw.count_documents(flt)  # type: ignore[no-any-return]

    async def insert_one(self, doc: dict[str, Any], *, session: Any = None) -> Any:
        await _io()
        self._maybe_fail(session)
        result = self.raw.insert_one(doc)
        if session is not None:
            session.saw(self, doc["_id"], None)
        return result

    async def insert_many(self, docs: list[dict[str, Any]], *, ordered: bool = True,
                          session: Any = None) -> Any:
        await _io()
        self._maybe_fail(session)
        for doc in docs:
            self.raw.insert_one(doc)
            if session is not None:
                session.saw(self, doc["_id"], None)
        return SimpleNamespace(inserted_ids=[d["_id"] for d in docs])

    async def update_one(self, flt: dict[str, Any], update: dict[str, Any], *, upsert: bool = False,
                         session: Any = None) -> Any:
        await _io()
        self._maybe_fail(session)
        self._before(session, flt)
        result = self.raw.update_one(flt, update, upsert=upsert)
        if session is not None and result.upserted_id is not None:
            session.saw(self, result.upserted_id, None)
        return result

    async def update_many(self, flt: dict[str, Any], update: dict[str, Any], *, session: Any = None) -> Any:
        await _io()
        self._maybe_fail(session)
        if session is not None and session.in_transaction:
            for doc in list(self.raw.find(flt)):
                session.saw(self, doc["_id"], doc)
        return self.raw.update_many(flt, update)

    async def replace_one(self, flt: dict[str, Any], doc: dict[str, Any], *, upsert: bool = False,
                          session: Any = None) -> Any:
        await _io()
        self._maybe_fail(session)
        self._before(session, flt)
        result = self.raw.replace_one(flt, doc, upsert=upsert)
        if session is not None and result.upserted_id is not None:
            session.saw(self, result.upserted_id, None)
        return result

    async def find_one_and_update(self, flt: dict[str, Any], update: dict[str, Any], *,
                                  upsert: bool = False, return_document: Any = None,
                                  session: Any = None) -> dict[str, Any] | None:
        await _io()
        self._maybe_fail(session)
        before = self._before(session, flt)
        after = self.raw.find_one_and_update(flt, update, upsert=upsert, return_document=return_document)
        if session is not None and before is None and after is not None:
            session.saw(self, after["_id"], None)
        return after  # type: ignore[no-any-return]

    async def delete_one(self, flt: dict[str, Any], *, session: Any = None) -> Any:
        await _io()
        self._maybe_fail(session)
        self._before(session, flt)
        return self.raw.delete_one(flt)

    async def delete_many(self, flt: dict[str, Any], *, session: Any = None) -> Any:
        await _io()
        self._maybe_fail(session)
        if session is not None and session.in_transaction:
            for doc in list(self.raw.find(flt)):
                session.saw(self, doc["_id"], doc)
        return self.raw.delete_many(flt)

    async def create_index(self, keys: list[tuple[str, int]], **options: Any) -> str:
        return self.raw.create_index(keys, **options)  # type: ignore[no-any-return]

    async def drop_index(self, name: str) -> None:
        self.raw.drop_index(name)

    async def drop(self) -> None:
        self.raw.drop()


class DoubleDatabase:
    def __init__(self, raw: Any, failures: list[str]) -> None:
        self._raw = raw
        self._failures = failures
        self.name: str = raw.name

    def __getitem__(self, name: str) -> DoubleCollection:
        return DoubleCollection(self._raw[name], self._failures)


class DoubleAdmin:
    def __init__(self, hello: dict[str, Any]) -> None:
        self._hello = hello

    async def command(self, name: str, *_: Any, **__: Any) -> dict[str, Any]:
        if name in ("hello", "isMaster", "ismaster"):
            return dict(self._hello)
        if name == "ping":
            return {"ok": 1.0}
        raise OperationFailure(f"the test double does not run the {name!r} command")


class DoubleClient:
    """The ``AsyncMongoClient`` surface over one shared in-memory server.

    ``hello`` is what the server says about itself; by default a primary of a replica set, so the
    start-up check passes (tests pass a standalone answer to check the start-up error).
    """

    def __init__(self, name: str, *, hello: dict[str, Any] | None = None) -> None:
        import mongomock

        self.name = name
        self._raw: Any = mongomock.MongoClient(_store=_server(name))
        self.admin = DoubleAdmin(hello or {"isWritablePrimary": True, "setName": "double", "ok": 1.0})
        # Error labels the next writes inside a transaction fail with (see ``inject_failures``).
        self.failures: list[str] = []

    def inject_failures(self, *labels: str) -> None:
        """Make the next ``len(labels)`` transactional writes fail with these error labels."""
        self.failures.extend(labels)

    def __getitem__(self, name: str) -> DoubleDatabase:
        return DoubleDatabase(self._raw[name], self.failures)

    def start_session(self, **_: Any) -> DoubleSession:
        return DoubleSession()

    async def close(self) -> None:
        self._raw.close()


def client_for(url: str) -> tuple[DoubleClient, str]:
    """The double client and database name for ``mongomock://NAME/DB``."""
    parts = urlsplit(url)
    name = parts.netloc or "default"
    database = parts.path.strip("/") or "termtem"
    return DoubleClient(name), database
