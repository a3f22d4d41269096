"""The Store contract every backend implements (SQLite embedded, MongoDB production).

A backend stores opaque resource bodies (bytes of JSON exactly as they will be served), their version
history and the search-index rows extracted at write time. Rules (versioning, validation, conditional
logic) live in ``fhir_server.interactions``; a backend only guarantees atomicity and ordering:
everything done inside one ``transaction()`` commits together or not at all, and transactions that
touch the same resources are serialised so no update is lost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

Method = Literal["POST", "PUT", "PATCH", "DELETE"]


def instant_now() -> str:
    """The current time as a FHIR instant in UTC with milliseconds (for what backends record)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of one resource. ``body`` is empty for a deletion (tombstone)."""

    resource_type: str
    id: str
    version: int
    last_updated: str  # FHIR instant, UTC, millisecond precision, e.g. 2026-11-22T10:00:00.123Z
    method: Method
    body: bytes

    @property
    def deleted(self) -> bool:
        return self.method == "DELETE"


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """History at system (type and id None), type (id None) or instance level, newest first.

    ``since``/``at`` are FHIR instants already validated and normalised to UTC ``...Z`` form.
    ``before_seq`` is the keyset cursor: only entries older than it are returned.
    """

    resource_type: str | None = None
    id: str | None = None
    since: str | None = None
    at: str | None = None
    count: int = 20
    before_seq: int | None = None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: list[StoredResource]
    # Cursor for the next (older) page, or None when this is the last page.
    next_before_seq: int | None
    total: int | None


@dataclass(frozen=True, slots=True)
class ScanPage:
    resources: list[StoredResource]
    # Position to continue after, or None when nothing more matches.
    last: int | None


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """An event recorded in the same transaction as the write that caused it (the outbox).

    ``number`` counts the events of one ``stream`` from 1, without gaps, in commit order (a
    subscription's event number); ``seq`` is the position of the recording (never reused, in commit
    order): the events one ``outbox_put_many`` recorded share it and their payload.
    """

    stream: str
    number: int
    seq: int
    recorded: str  # FHIR instant, when the event was recorded
    payload: dict[str, Any]


class StoreTransaction(Protocol):
    """Operations inside one atomic, serialised write transaction."""

    # The store this transaction writes to, without any caller's restrictions (for server-side
    # bookkeeping on the write path, such as the subscription engine of that store).
    store: Store

    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        """The current version, a tombstone if deleted, or None if never created."""

    async def search(self, query: Any) -> Any:
        """Run a compiled search (``fhir_server.search``) inside the transaction."""

    async def put(self, resource: StoredResource, index: Any) -> StoredResource:
        """Store a new version (create, update, patch) with its search-index rows; returns the version
        as stored (a wrapping layer may add server-set content, such as the writing agency's tag).

        The caller has already checked ``resource.version`` is the current version + 1.
        """

    async def delete(self, tombstone: StoredResource) -> None:
        """Record a deletion as a new version with an empty body; index rows go away."""

    async def outbox_put(self, stream: str, payload: dict[str, Any]) -> None:
        """Record an event on ``stream`` with this transaction: it exists if and only if the transaction
        commits, numbered after every event of the stream committed before it (so a crash between a
        write and whatever delivers its events never loses one)."""

    async def outbox_put_many(self, streams: Sequence[str], payload: dict[str, Any]) -> None:
        """``outbox_put`` of one event on each of ``streams`` (a write that notifies many
        subscriptions: the payload is encoded once)."""

    async def kv_get(self, namespace: str, key: str) -> dict[str, Any] | None:
        """The key/value area as this transaction sees it (its own writes included)."""

    async def kv_put(self, namespace: str, key: str, value: dict[str, Any] | None) -> None:
        """Set (None: remove) a key/value entry with this transaction: it changes if and only if the
        transaction commits (server bookkeeping that must stay in step with resources written here)."""


class Store(Protocol):
    url: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[StoreTransaction]:
        """A write transaction; commits on normal exit, rolls back on exception."""

    async def read(self, resource_type: str, id: str) -> StoredResource | None: ...

    async def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None: ...

    async def history(self, query: HistoryQuery) -> HistoryPage: ...

    async def search(self, query: Any) -> Any:
        """Run a compiled search outside any write transaction (a consistent snapshot)."""

    async def scan(
        self, query: Any, after: int = 0, *, limit: int = 1000, max_bytes: int = 8 << 20
    ) -> ScanPage:
        """Current resources matching a compiled search's conditions and ``access``, in storage order
        after position ``after`` (0: from the start): at most ``limit``, and no more once their bodies
        add up to ``max_bytes`` (always at least one). Sort, paging, includes and totals are ignored.

        Bulk export reads through this: memory stays bounded by bytes whatever the resources' sizes,
        and ``last`` is a checkpoint that survives restarts.
        """

    def iterate(self, resource_type: str | None = None) -> AsyncIterator[StoredResource]:
        """Every current, non-deleted resource (of one type, or all), streamed (reindex, copy, export)."""

    def iterate_history(self) -> AsyncIterator[StoredResource]:
        """Every version of every resource in commit order, streamed (store copy)."""

    async def changes(self, after: int, limit: int = 500) -> list[tuple[int, StoredResource]]:
        """The change feed: versions whose change number is above ``after``, oldest first, with their
        numbers (every version gets one when written, and they only grow). Analytics follows it."""

    async def last_change(self) -> int:
        """The newest change number (0 for an empty store)."""

    async def append(self, resources: Sequence[tuple[StoredResource, Any]]) -> None:
        """Store new resources (version 1 under fresh ids, never an update) durably before returning.

        For records nobody reads before writing (AuditEvents): a backend may commit the appends of
        concurrent callers together (group commit), each caller still returning only once its own
        resources are committed.
        """

    async def reindex(self, resource: StoredResource, index: Any) -> None:
        """Replace the index rows of the current version of ``resource`` (a ``$reindex`` job)."""

    async def import_versions(self, versions: Sequence[tuple[StoredResource, Any]]) -> None:
        """Write historical versions exactly as given, atomically, in order (``termtem copy``).

        Each version is appended to the history; it becomes the current version (with its index
        rows, none for a tombstone) when it is newer than the current one. No version checks: the
        caller streams another store's ``iterate_history`` into an empty store.
        """

    # The outbox: events recorded by ``StoreTransaction.outbox_put`` (subscription notifications,
    # work for background jobs), read by whoever delivers them, from any process sharing the store.
    async def outbox_read(self, stream: str, after: int = 0, limit: int = 100) -> list[OutboxEvent]:
        """Events of ``stream`` numbered above ``after``, oldest first, at most ``limit``."""

    async def outbox_since(self, seq: int, limit: int = 1000) -> list[OutboxEvent]:
        """Events of every stream with ``seq`` above ``seq``, in ``seq`` order (finding new work):
        whole recordings at a time, so at least ``limit`` events when there are that many."""

    async def outbox_last(self, stream: str) -> int:
        """The number of the stream's last event (0 when it has none), trimmed ones included."""

    async def outbox_trim(self, stream: str, through: int) -> int:
        """Forget the stream's events numbered up to ``through``; returns how many went. Numbering
        carries on after the last event ever recorded."""

    async def outbox_wait(self, after_seq: int, timeout: float) -> int:
        """Return once an event with ``seq`` above ``after_seq`` may exist: at once when one does,
        as soon as this process commits one, else after ``timeout`` seconds (other processes'
        commits are seen by looking again). Returns the highest ``seq`` recorded so far (0: none)."""

    # A small key/value area for server state that is not FHIR content: the client registry,
    # replay caches, job checkpoints. Values are JSON-compatible dicts.
    async def kv_get(self, namespace: str, key: str) -> dict[str, Any] | None: ...

    async def kv_put(self, namespace: str, key: str, value: dict[str, Any]) -> None: ...

    async def kv_delete(self, namespace: str, key: str) -> bool: ...

    async def kv_list(self, namespace: str) -> list[tuple[str, dict[str, Any]]]: ...

    async def kv_compare_and_set(
        self, namespace: str, key: str, expected: dict[str, Any] | None, value: dict[str, Any] | None
    ) -> bool:
        """Atomically replace the value under ``key`` with ``value`` (None: delete it) if, and only if,
        the current value equals ``expected`` (None: no value). Returns whether it did.

        Atomic across every process sharing the store, so it is how background jobs are claimed.
        Equality is of the JSON values (key order does not matter).
        """
