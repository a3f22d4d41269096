"""Custom SearchParameters in step with the store, in every server process.

The registry of search parameters lives in each process's memory. A SearchParameter created, changed or
retired through one server process, and a ``$reindex`` job finished by one, must count in the others too
(``termtem serve --workers``): a process that did not know a parameter would store new resources without
its index rows, and later searches on it would miss them. Before each write and each search, the newest
SearchParameter version in the store is compared with the one last seen (one indexed look-up); when it
moved, the stored SearchParameters are registered again. While a parameter waits for its reindex, the
job records are checked too, so it becomes searchable in every process once its job completes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from fhir_server import jobs
from fhir_server.interactions.errors import FhirError
from fhir_server.search import registry, reindex
from fhir_server.storage.base import HistoryQuery

_seen: dict[str, tuple[str, int] | None] = {}  # store url -> newest SearchParameter version seen
_lock = asyncio.Lock()


def _unguarded(store: Any) -> Any:
    opener = getattr(store, "definitions_reader", None)
    return opener() if callable(opener) else store


async def refresh(store: Any) -> None:
    """Bring this process's custom search parameters in step with ``store`` (cheap when unchanged)."""
    if store is None:
        return
    store = _unguarded(store)
    key = getattr(store, "url", "")
    page = await store.history(HistoryQuery(resource_type="SearchParameter", count=1, before_seq=2**62))
    newest = (page.entries[0].id, page.entries[0].version) if page.entries else None
    if key not in _seen:
        _seen[key] = newest  # start-up registered everything stored (interactions.startup)
    elif _seen[key] != newest:
        async with _lock:
            if _seen[key] != newest:
                await _reload(store)
                _seen[key] = newest
    if registry.pending_urls():  # a reindex job may have completed in another process
        for job in await jobs.list_jobs(store, kind=reindex.KIND):
            if job.state == "completed":
                reindex._activate(job.id, job.params["urls"])


async def _reload(store: Any) -> None:
    stored: dict[str, dict[str, Any]] = {}
    async for version in store.iterate("SearchParameter"):
        resource = orjson.loads(version.body)
        if isinstance(resource.get("url"), str):
            stored[resource["url"]] = resource
    for url in {p.url for p in registry.custom_parameters()} - stored.keys():
        registry.on_search_parameter_deleted(url)
    for url, resource in stored.items():
        known = registry.definition(url)
        if known is not None and _essence(known) == _essence(resource):
            continue
        try:
            registry.on_search_parameter_written(resource)
        except FhirError:  # stored without the write-time check (auth off, an older release): unusable
            continue


def _essence(sp: dict[str, Any]) -> tuple[Any, ...]:
    """What decides how a parameter indexes and searches (not its id, meta or narrative)."""
    return (
        sp.get("code"),
        sp.get("type"),
        sp.get("expression"),
        sorted(b for b in sp.get("base") or [] if isinstance(b, str)),
        sp.get("status"),
        orjson.dumps(sp.get("component")),
    )
