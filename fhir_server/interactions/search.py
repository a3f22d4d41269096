"""The search interaction: parse, run one page in the store, and build the searchset Bundle."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from fhir_server import catalog
from fhir_server.interactions import shaping
from fhir_server.interactions.context import RequestContext
from fhir_server.search.query import SearchQuery, parse_search
from fhir_server.search.result import SearchPage
from fhir_server.storage.base import StoredResource

# Conditional interactions only need to know whether 0, 1 or several resources match.
_CONDITIONAL_COUNT = 3


def _query(
    ctx: RequestContext,
    resource_type: str | None,
    params: list[tuple[str, str]],
    compartment: tuple[str, str] | None,
) -> SearchQuery:
    from fhir_server.identity.conditional import search_params

    settings = ctx.settings
    if resource_type is not None:
        types: tuple[str, ...] | None = (resource_type,)
    else:
        named = [t.strip() for n, v in params if n == "_type" for t in v.split(",")]
        types = tuple(named) or None
    params = search_params(types, params, compartment)
    return parse_search(
        resource_type,
        params,
        base_url=ctx.base_url,
        strict=ctx.strict,
        default_count=settings.default_page_size,
        max_count=settings.max_page_size,
        compartment=compartment,
    )


def _search_url(ctx: RequestContext, resource_type: str | None, compartment: tuple[str, str] | None) -> str:
    parts = [ctx.base_url]
    if compartment:
        parts.append(f"{compartment[0]}/{compartment[1]}")
        parts.append(resource_type or "*")
    elif resource_type:
        parts.append(resource_type)
    return "/".join(parts)


def _link(url: str, params: list[tuple[str, str]]) -> str:
    return f"{url}?{urlencode(params)}" if params else url


def _entry(ctx: RequestContext, stored: StoredResource, mode: str, query: SearchQuery) -> dict[str, Any]:
    # The stored (or shaped) bytes go out as they are: parsing and re-serialising would turn 1.50 into 1.5.
    body = shaping.shape(stored.body, stored.resource_type, query.summary, list(query.elements) or None)
    return {
        "fullUrl": f"{ctx.base_url}/{stored.resource_type}/{stored.id}",
        "resource": orjson.Fragment(body),
        "search": {"mode": mode},
    }


def build_bundle(
    ctx: RequestContext,
    resource_type: str | None,
    query: SearchQuery,
    page: SearchPage,
    compartment: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The searchset Bundle for one page (links carry only what was really applied)."""
    url = _search_url(ctx, resource_type, compartment)
    applied = list(query.applied)
    if not any(name == "_count" for name, _ in applied):
        applied.append(("_count", str(query.count)))
    links = [
        {
            "relation": "self",
            "url": _link(url, applied + ([("_cursor", c)] if (c := _self_cursor(query)) else [])),
        }
    ]
    links.append({"relation": "first", "url": _link(url, applied)})
    if page.next_cursor:
        links.append({"relation": "next", "url": _link(url, [*applied, ("_cursor", page.next_cursor)])})
    if page.prev_cursor:
        links.append({"relation": "previous", "url": _link(url, [*applied, ("_cursor", page.prev_cursor)])})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    entries = [_entry(ctx, s, "match", query) for s in page.matches]
    entries.extend(_entry(ctx, s, "include", query) for s in page.included)
    issues = [{"severity": "warning", "code": "informational", "diagnostics": w} for w in page.warnings]
    note = _total_note(query, page)
    if note:
        issues.append({"severity": "information", "code": "informational", "diagnostics": note})
    if issues:
        entries.append(
            {
                "resource": {"resourceType": "OperationOutcome", "issue": issues},
                "search": {"mode": "outcome"},
            }
        )
    if entries:
        bundle["entry"] = entries
    return bundle


def _total_note(query: SearchQuery, page: SearchPage) -> str | None:
    """With ``_total=estimate``, say whether Bundle.total is exact or an estimate.

    FHIR has no element for this; the searchset's outcome entry (search.mode = outcome) is where a
    server tells the client about how it ran the search.
    """
    if query.total != "estimate" or page.total is None:
        return None
    if page.total_estimated:
        return f"Bundle.total ({page.total}) is an estimate; use _total=accurate for an exact count"
    return f"Bundle.total ({page.total}) is exact"


def _self_cursor(query: SearchQuery) -> str | None:
    if query.cursor is None:
        return None
    from fhir_server.search.query import encode_cursor

    return encode_cursor(query.cursor)


async def search(
    ctx: RequestContext,
    resource_type: str | None,
    params: list[tuple[str, str]],
    *,
    compartment: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """``GET [base]/[type]?...``, ``POST [type]/_search``, system and compartment search."""
    from fhir_server.identity.links import expand_mdm
    from fhir_server.search import sync

    await sync.refresh(ctx.store)  # custom search parameters, perhaps created by another process
    params, sent = await expand_mdm(ctx.store, resource_type, params)
    query = _query(ctx, resource_type, params, compartment)
    if sent:  # links show the :mdm parameter as sent, not the linked ids it stands for
        query.applied = [sent.get(item, item) for item in query.applied]
    page: SearchPage
    if resource_type in catalog.CATALOG_TYPES and compartment is None:
        page = await catalog.merged_search(ctx, query)  # the store's, then HL7's shipped definitions
    else:
        page = await ctx.store.search(query)
    return build_bundle(ctx, resource_type, query, page, compartment)


async def find_matches(
    ctx: RequestContext, tx: Any, resource_type: str, query_string: str, *, limit: int | None = None
) -> list[StoredResource]:
    """Resources matching a conditional request's criteria (at most a few: callers need 0, 1 or many).

    Runs inside ``tx`` when given (so the check and the write are atomic), else on the store.
    Criteria are parsed strictly: an unknown parameter must not silently widen a conditional match.
    """
    params = parse_qsl(query_string.lstrip("?"), keep_blank_values=True)
    query = parse_search(
        resource_type,
        params,
        base_url=ctx.base_url,
        strict=True,
        default_count=limit or _CONDITIONAL_COUNT,
        max_count=limit or _CONDITIONAL_COUNT,
    )
    query.count = limit or _CONDITIONAL_COUNT
    query.includes, query.revincludes, query.total, query.summary = (), (), "none", None
    page: SearchPage = await (tx.search(query) if tx is not None else ctx.store.search(query))
    return page.matches
