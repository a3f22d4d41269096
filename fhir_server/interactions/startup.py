"""Bring a store up to date with what this release ships: our terminology, profiles and search
parameters become ordinary resources (readable, searchable, versioned) on start-up.

Loading is idempotent: a resource already stored with the same content gets no new version.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from fhir_server.config import Settings
from fhir_server.interactions import writes
from fhir_server.interactions.context import RequestContext
from fhir_server.storage.base import Store

if TYPE_CHECKING:
    from fhir_server.jobs import JobRunner

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
        ("fhir_server.analytics.measures.library", "shipped_measures"),
        ("fhir_server.workflow.help_requests", "shipped_resources"),
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
    async with writes.transaction(ctx.store) as tx:
        for resource in resources:
            resource = dict(resource)
            resource_type, id_ = resource["resourceType"], resource["id"]
            current = await tx.read(resource_type, id_)
            if writes.unchanged(current, resource, None):
                continue
            await writes.write_version(tx, resource_type, id_, resource, None, current=current, method="PUT")
            changed += 1
    return changed


async def prepare_store(store: Store, settings: Settings, *, load_shipped: bool = True) -> None:
    """Start-up of one server process. ``load_shipped`` False: the shipped resources are known to be
    stored already (``termtem serve --workers`` loads them once, before the workers start)."""
    from fhir_server.storage.schema_version import check_schema

    await check_schema(store)  # before anything is written: a newer layout is refused, an older migrated
    if load_shipped:
        ctx = RequestContext(store=store, settings=settings, base_url=settings.public_base_url or "")
        changed = await load_resources(ctx, shipped_resources())
        if changed:
            log.info("loaded %d shipped conformance resources", changed)
    from fhir_server.search import registry, reindex

    async for stored in store.iterate("SearchParameter"):
        registry.on_search_parameter_written(orjson.loads(stored.body))
    # Parameters whose reindex finished become usable; unfinished jobs wait for a job runner.
    await reindex.resume(store)


async def start_jobs(store: Store, settings: Settings) -> JobRunner:
    """Start this process's job runner; small reindex jobs get a few seconds to finish first, so a
    restarted server answers searches on new parameters as soon as it can."""
    from fhir_server import jobs
    from fhir_server.search import reindex

    runner = jobs.JobRunner(
        store,
        concurrency=settings.job_workers,
        lease_seconds=settings.job_lease_seconds,
        poll_seconds=settings.job_poll_seconds,
    )
    await runner.start()
    pending = await reindex.resume(store)
    if pending:
        await jobs.wait_for(store, pending, timeout=10)
    from fhir_server.identity import job as identity_job

    await identity_job.adopt_legacy(store)  # a linking job recorded before the shared runner carries on
    return runner


async def release_store(store: Store, runner: JobRunner | None = None) -> None:
    """Shutdown: running jobs stop at a checkpoint (and resume later) before the store closes."""
    if runner is not None:
        await runner.stop()
