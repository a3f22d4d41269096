"""Searching the shipped definitions together with the store: the store's matches, then the catalog's.

The catalog's index is a private SQLite store (a temporary file per process), filled type by type the
first time a search needs it, in a worker thread with its own event loop so the server keeps answering
while ~1,300 definitions are indexed. Paging runs through the store's matches first; the cursor of a
page in the shipped part carries the marker ``c`` (``s`` for its first page).
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from fhir_server.catalog.resources import CATALOG_TYPES, stored
from fhir_server.search.query import SearchQuery, decode_cursor, encode_cursor
from fhir_server.search.result import SearchPage

_lock = threading.Lock()
_loaded: set[str] = set()
_index: Any = None  # the catalog's SqliteStore, once created
_MARK, _START = "c", "s"


async def _fill(missing: list[str]) -> None:
    global _index
    from fhir_server.search.extract import extract_index
    from fhir_server.storage.sqlite.store import SqliteStore

    if _index is None:
        folder = Path(tempfile.mkdtemp(prefix="termtem-catalog-"))
        atexit.register(shutil.rmtree, folder, True)
        index = SqliteStore(f"sqlite:///{folder / 'catalog.sqlite'}", readers=2)
        await index.open()
        _index = index
    for resource_type in missing:
        versions = [(s, extract_index(orjson.loads(s.body))) for s in stored(resource_type)]
        await _index.import_versions(versions)
        _loaded.add(resource_type)


def _ensure(types: Iterable[str]) -> Any:
    """The catalog index with ``types`` loaded (blocking: call it in a worker thread)."""
    with _lock:
        missing = sorted(t for t in set(types) if t in CATALOG_TYPES and t not in _loaded)
        if _index is None or missing:
            asyncio.run(_fill(missing))
        return _index


async def _catalog(query: SearchQuery) -> SearchPage:
    index = await asyncio.to_thread(_ensure, query.resource_types)
    page: SearchPage = await index.search(dataclasses.replace(query, access=None))  # public definitions
    return page


def _counting(query: SearchQuery) -> SearchQuery:
    return dataclasses.replace(
        query, summary="count", total="accurate", count=0, cursor=None, includes=(), revincludes=(), sort=()
    )


def _tag(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    return encode_cursor({**decode_cursor(cursor), _MARK: 1})


def _wants_total(query: SearchQuery) -> bool:
    return query.summary == "count" or query.total in ("accurate", "estimate")


async def merged_search(ctx: Any, query: SearchQuery) -> SearchPage:
    """One page of a type search over the store's resources followed by the shipped definitions."""
    cursor = query.cursor or {}
    if cursor.get(_MARK):
        return await _shipped_part(ctx, query, cursor)
    page: SearchPage = await ctx.store.search(query)  # the store (and its guard) first
    if _wants_total(query):
        page.total = (page.total or 0) + ((await _catalog(_counting(query))).total or 0)
    if page.next_cursor is not None or query.summary == "count" or query.count == 0:
        return page
    room = query.count - len(page.matches)
    if room > 0:
        shipped = await _catalog(dataclasses.replace(query, cursor=None, count=room, total="none"))
        page.matches = [*page.matches, *shipped.matches]
        page.included = [*page.included, *shipped.included]
        page.next_cursor = _tag(shipped.next_cursor)
        if not _wants_total(query):  # the store's own count of a complete page covers its part only
            complete = page.total is not None and shipped.next_cursor is None
            page.total = page.total + len(shipped.matches) if complete else None
    else:
        peek = dataclasses.replace(query, cursor=None, count=1, total="none", includes=(), revincludes=())
        if (await _catalog(peek)).matches:
            page.next_cursor = encode_cursor({"k": [], "r": 0, _MARK: 1, _START: 1})
            if not _wants_total(query):
                page.total = None
    return page


async def _shipped_part(ctx: Any, query: SearchQuery, cursor: dict[str, Any]) -> SearchPage:
    # The store still decides whether this caller may search the type at all (and gives its count).
    stored_count: SearchPage = await ctx.store.search(_counting(query))
    inner = None if cursor.get(_START) else {k: v for k, v in cursor.items() if k != _MARK}
    page = await _catalog(dataclasses.replace(query, cursor=inner, total="none"))
    page.next_cursor = _tag(page.next_cursor)
    page.prev_cursor = _tag(page.prev_cursor) if inner is not None else None
    page.warnings = list(query.warnings)
    if _wants_total(query):
        page.total = (stored_count.total or 0) + ((await _catalog(_counting(query))).total or 0)
    return page
