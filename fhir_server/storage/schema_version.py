"""The store's schema version: recorded in the store, checked at every start, migrated forward.

A release that changes how data is laid out in a store (tables, index rows, documents) raises
``SCHEMA_VERSION`` and adds the step from the previous version to ``MIGRATIONS``; start-up then runs
the missing steps in order. A store written by a newer release is refused, with a message saying so,
rather than misread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fhir_server import __version__
from fhir_server.observability.redact import redact_url
from fhir_server.storage import StoreError

SCHEMA_VERSION = 3
NAMESPACE, KEY = "termtem", "schema"


async def _outbox_keyed_by_stream_id(store: Any) -> None:
    """2: SQLite keeps subscription events under a small key per stream (``outbox_events``); a store
    that opens the first layout moves them at once (``SqliteStore.open``), this only makes sure. A
    release that reads version 1 would not see them: the version keeps it from opening the store."""
    migrate = getattr(store, "migrate_outbox", None)
    if migrate is not None:
        await migrate()


async def _outbox_one_entry_per_write(store: Any) -> None:
    """3: one outbox entry per write with the streams it is on, sparse marks per stream
    (``storage.outbox``), in both backends; a store moves its older events when it opens, this only
    makes sure. A release that reads version 2 would not see the new entries."""
    migrate = getattr(store, "migrate_outbox", None)
    if migrate is not None:
        await migrate()


# version N -> the step that brings a store from version N-1 to N.
MIGRATIONS: dict[int, Callable[[Any], Awaitable[None]]] = {
    2: _outbox_keyed_by_stream_id,
    3: _outbox_one_entry_per_write,
}


class SchemaMismatch(StoreError):
    """The store's layout is not one this release can use."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _record(version: int) -> dict[str, Any]:
    return {"version": version, "software": __version__, "since": _now()}


async def check_schema(store: Any) -> int:
    """Record, check or migrate the store's schema version; returns the version now in force."""
    record = await store.kv_get(NAMESPACE, KEY)
    if record is None:
        # A new store, or one from before versions were recorded (both have the first layout).
        await store.kv_put(NAMESPACE, KEY, _record(SCHEMA_VERSION))
        return SCHEMA_VERSION
    version = record.get("version")
    name = redact_url(getattr(store, "url", "?"))
    if not isinstance(version, int) or version < 1:
        raise SchemaMismatch(f"the store {name} has an unreadable schema record ({record!r})")
    if version > SCHEMA_VERSION:
        raise SchemaMismatch(
            f"the store {name} has schema version {version} (written by Termtem {record.get('software')});"
            f" Termtem {__version__} reads versions up to {SCHEMA_VERSION}: upgrade Termtem, or restore a"
            " backup taken before the upgrade"
        )
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version + 1)
        if step is None:
            raise SchemaMismatch(f"no migration from schema version {version} to {version + 1}")
        await step(store)
        version += 1
        await store.kv_put(NAMESPACE, KEY, _record(version))
    return version
