"""Finding the resources a conditional request (If-None-Exist, PUT/DELETE/PATCH [type]?query) names."""

from __future__ import annotations

from typing import Any

from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError
from fhir_server.storage.base import StoredResource


async def matches(
    ctx: RequestContext, tx: Any, resource_type: str, query: str, *, limit: int | None = None
) -> list[StoredResource]:
    """Current resources of ``resource_type`` matching ``query`` (a query string, no leading '?').

    Without ``limit`` only a few are returned: enough to tell none, one and several apart.
    """
    from fhir_server.interactions.search import find_matches

    query = query.lstrip("?")
    # Clients often write the criteria as a whole relative URL ("Patient?identifier=..."): accept it.
    if query.startswith(f"{resource_type}?"):
        query = query[len(resource_type) + 1 :]
    if not query:
        raise FhirError(400, "A conditional request needs search criteria", code="required")
    if resource_type == "Patient":
        from fhir_server.identity.conditional import own_records_query

        query = own_records_query(ctx, query)
    return await find_matches(ctx, tx, resource_type, query, limit=limit)


def single(found: list[StoredResource], what: str, detail: str = "") -> StoredResource | None:
    """At most one match, else the spec's 412 Precondition Failed."""
    if len(found) > 1:
        raise FhirError(
            412,
            (detail and f"{what}: {detail}")
            or f"{what}: the criteria match {len(found)} resources; they must match at most one",
            code="multiple-matches",
        )
    return found[0] if found else None


async def find_one(
    ctx: RequestContext, tx: Any, resource_type: str, query: str, what: str
) -> StoredResource | None:
    """The one resource conditional criteria name, or None; 412 naming the records when several match."""
    found = await matches(ctx, tx, resource_type, query)
    return single(found, what, await duplicates_detail(tx, resource_type, query, found))


async def duplicates_detail(tx: Any, resource_type: str, query: str, found: list[StoredResource]) -> str:
    """For several Patients, who the child is and which records match (else nothing to add)."""
    if resource_type != "Patient" or len(found) < 2:
        return ""
    from fhir_server.identity.conditional import duplicates_detail as detail

    return await detail(tx, query.lstrip("?"), found)
