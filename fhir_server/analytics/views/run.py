"""Running a view over the resources a caller may see (or over resources given inline).

The resources come through ``ctx.store``: for an authenticated request that is the security guard's
``SecuredStore``, so the caller's ``Access`` restriction is compiled into every page of the search that
feeds the view (never bypassed). Clients that may see everything read the store in one stream.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import pyarrow as pa

from fhir_server.analytics.views import derived, output, scan
from fhir_server.analytics.views.definition import View, ViewError
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError
from fhir_server.search.query import decode_cursor, parse_search

_PAGE = 1000
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass
class RunOptions:
    fmt: str = "ndjson"
    header: bool = True
    limit: int | None = None
    since: str | None = None  # FHIR instant: only resources updated at or after it
    patients: list[str] = field(default_factory=list)  # Patient ids: only their compartments
    resources: list[dict[str, Any]] | None = None  # inline resources instead of the store


def _unrestricted(ctx: RequestContext) -> bool:
    guard = ctx.extras.get("guard")
    return guard is None or guard.unrestricted()


async def _search_pages(
    ctx: RequestContext,
    resource_type: str,
    params: list[tuple[str, str]],
    compartment: tuple[str, str] | None,
) -> AsyncIterator[bytes]:
    query = parse_search(
        resource_type,
        [*params, ("_count", str(_PAGE))],
        base_url=ctx.base_url,
        strict=True,
        default_count=_PAGE,
        max_count=max(_PAGE, ctx.settings.max_page_size),
        compartment=compartment,
    )
    query.count = _PAGE
    while True:
        page = await ctx.store.search(query)
        for stored in page.matches:
            yield stored.body
        if not page.next_cursor:
            return
        query.cursor = decode_cursor(page.next_cursor)


async def body_batches(store: Any, resource_type: str) -> AsyncIterator[list[bytes]]:
    """Every stored ``resource_type`` body, in batches: read ahead by stores that can
    (``iterate_bodies``), else from ``iterate``. For callers that may read the whole store."""
    if hasattr(store, "iterate_bodies") and hasattr(getattr(store, "_inner", store), "iterate_bodies"):
        async for batch in store.iterate_bodies(resource_type):
            yield batch
        return
    batch: list[bytes] = []
    async for stored in store.iterate(resource_type):
        batch.append(stored.body)
        if len(batch) >= 2000:
            yield batch
            batch = []
    if batch:
        yield batch


async def visible_bodies(
    ctx: RequestContext, resource_type: str, options: RunOptions
) -> AsyncIterator[bytes]:
    """The stored JSON of every ``resource_type`` resource the caller may see (filtered by options).

    Golden Patients (``fhir_server.identity``) are left out, as in searches: views count the records
    agencies keep, and each child's golden record would count it once more.
    """
    from fhir_server.identity.model import is_golden_body

    async for body in _visible_bodies(ctx, resource_type, options):
        if resource_type != "Patient" or not is_golden_body(body):
            yield body


async def _visible_bodies(
    ctx: RequestContext, resource_type: str, options: RunOptions
) -> AsyncIterator[bytes]:
    params: list[tuple[str, str]] = []
    if options.since:
        params.append(("_lastUpdated", f"ge{options.since}"))
    if options.patients:
        for patient in options.patients:
            async for body in _search_pages(ctx, resource_type, params, ("Patient", patient)):
                yield body
        return
    if not params and _unrestricted(ctx):
        async for batch in body_batches(ctx.store, resource_type):
            for body in batch:
                yield body
        return
    async for body in _search_pages(ctx, resource_type, params, None):
        yield body


def rows_of(
    view: View, resources: Iterable[dict[str, Any]], limit: int | None = None
) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for resource in resources:
        if resource.get("resourceType") != view.resource_type:
            continue
        out.extend(view.rows(resource))
        if limit is not None and len(out) >= limit:
            return out[:limit]
    return out


async def collect_rows(ctx: RequestContext, view: View, options: RunOptions) -> list[tuple[Any, ...]]:
    if options.resources is not None:
        return rows_of(view, options.resources, options.limit)
    out: list[tuple[Any, ...]] = []
    loads = orjson.loads
    may_match = view.may_match
    async for body in visible_bodies(ctx, view.resource_type, options):
        if may_match(body):
            out.extend(view.rows(loads(body)))
        if options.limit is not None and len(out) >= options.limit:
            return out[: options.limit]
    return out


async def run_view(ctx: RequestContext, view: View, options: RunOptions) -> bytes:
    """The view's output in ``options.fmt``; a ViewError (a row the view cannot make) becomes 422."""
    for patient in options.patients:
        if not _ID.match(patient):
            raise FhirError(400, f"'{patient}' is not a Patient id", expression=["patient"])
    try:
        if view.derivation == derived.GROWTH_ZSCORES:
            rows = await _growth_zscores(ctx, view, options)
            return output.write(
                output.to_table(derived.GROWTH_SHAPE, rows), options.fmt, header=options.header
            )
        table = await view_table(ctx, view, options)
    except ViewError as exc:
        raise FhirError(422, exc.message, code="processing", expression=[exc.where]) from None
    return output.write(table, options.fmt, header=options.header)


async def view_table(ctx: RequestContext, view: View, options: RunOptions) -> pa.Table:
    """The view's rows as a table: a whole type read for a caller who may see everything goes through
    ``scan.scan_table`` (worker processes beside the scan), anything narrower row by row here."""
    whole = (
        options.resources is None
        and not options.patients
        and not options.since
        and options.limit is None
        and _unrestricted(ctx)
    )
    if whole:
        batches = body_batches(ctx.store, view.resource_type)
        return await scan.scan_table(view, batches, ctx.settings.view_processes)
    return output.to_table(view, await collect_rows(ctx, view, options))


async def _growth_zscores(ctx: RequestContext, view: View, options: RunOptions) -> list[tuple[Any, ...]]:
    """The growth visits with z-scores (derived.py): the view's measurements and the children, both
    over what the caller may see."""
    from fhir_server.analytics.views.library import raw_store, shipped_view

    measurements = await collect_rows(ctx, view, replace(options, limit=None))
    children_view = shipped_view("children")
    children = await collect_rows(
        ctx, children_view, RunOptions(patients=options.patients, resources=options.resources)
    )
    secret = await derived.child_key_secret(raw_store(ctx.store))
    rows = derived.growth_rows(measurements, view.columns, children, children_view.columns, secret)
    return rows if options.limit is None else rows[: options.limit]
