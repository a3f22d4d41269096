"""Bring a store up to date with what this release ships: our terminology, profiles and search
parameters become ordinary resources (readable, searchable, versioned) on start-up.

Loading is idempotent: a resource already stored with the same content gets no new version.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson

from fhir_server.config import Settings
from fhir_server.interactions import writes
from fhir_server.interactions.context import RequestContext
from fhir_server.storage.base import Store

log = logging.getLogger("termtem")


def shipped_resources() -> list[dict[str, Any]]:
    """Every conformance resource this release ships, from the capabilities that are present."""
    out: list[dict[str, Any]] = []
    for module, function in (
        ("fhir_server.terminology", "shipped_resources"),
        ("fhir_server.validation.profiles", "shipped_profiles"),
        ("fhir_server.analytics.views.library", "shipped_views"),
        ("fhir_server.wellbeing", "shipped_resources"),
        ("fhir_server.operations.published", "operation_definitions"),
    ):
        try:
            provider = getattr(__import__(module, fromlist=[function]), function)
        except (ImportError, AttributeError):
            continue
        out.extend(provider())
    return out


async def load_resources(ctx: RequestContext, resources: Iterable[dict[str, Any]]) -> int:
    """Store each resource under its own id unless already stored unchanged; returns how many changed."""
    changed = 0
    async with ctx.store.transaction() as tx:
        for resource in resources:
            resource = dict(resource)
            resource_type, id_ = resource["resourceType"], resource["id"]
            current = await tx.read(resource_type, id_)
            if writes.unchanged(current, resource, None):
                continue
            await writes.write_version(tx, resource_type, id_, resource, None, current=current, method="PUT")
            changed += 1
    return changed


async def prepare_store(store: Store, settings: Settings) -> None:
    from fhir_server.storage.schema_version import check_schema

    await check_schema(store)  # before anything is written: a newer layout is refused, an older migrated
    ctx = RequestContext(store=store, settings=settings, base_url=settings.public_base_url or "")
    resources = shipped_resources()
    changed = await load_resources(ctx, resources)
    if changed:
        log.info("loaded %d shipped conformance resources", changed)
    from fhir_server.search import registry, reindex

    async for stored in store.iterate("SearchParameter"):
        registry.on_search_parameter_written(orjson.loads(stored.body))
    # Parameters whose reindex finished become usable; unfinished jobs carry on from their checkpoint.
    started = await reindex.resume(store)
    await reindex.settle(started, timeout=10)


async def release_store(store: Store) -> None:
    """Shutdown: background jobs stop at a checkpoint before the store closes."""
    from fhir_server.search import reindex

    await reindex.stop_all()
