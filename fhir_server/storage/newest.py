"""Has anything of a type changed? The newest version of a type, and one look-up for several checks.

The per-process books (identity links, Consents) and the client registry are checked against the store
on every secured request. ``probe`` answers all of a request's checks in one statement where the backend
offers it (SQLite: one read transaction instead of three) and one by one elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir_server.storage.base import HistoryQuery

Newest = tuple[str, int, str] | None  # (id, version, lastUpdated) of a type's newest version; None: none


class Unknown:
    """Not read yet: the callee looks it up itself."""


UNKNOWN = Unknown()


async def newest_version(store: Any, resource_type: str) -> Newest:
    page = await store.history(HistoryQuery(resource_type=resource_type, count=1, before_seq=2**62))
    newest = page.entries[0] if page.entries else None
    return (newest.id, newest.version, newest.last_updated) if newest else None


async def probe(
    store: Any, namespace: str, key: str, resource_types: Sequence[str]
) -> tuple[dict[str, Any] | None, dict[str, Newest]]:
    """The key/value entry ``namespace``/``key`` and the newest version of each type, read together."""
    together = getattr(store, "probe", None)
    if together is not None:
        entry, newest = await together(namespace, key, tuple(resource_types))
        return entry, newest
    return await store.kv_get(namespace, key), {t: await newest_version(store, t) for t in resource_types}
