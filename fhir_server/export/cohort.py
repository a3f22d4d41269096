"""Cohorts: the children of a Group, from its member list or from criteria evaluated when the export starts.

A plain Group lists its members (``Group.member.entity``; inactive members and memberships whose period
has ended are left out). A criteria-defined Group carries one or more ``member-filter`` extensions (the
Bulk Data cohort work): FHIR search expressions such as ``Patient?birthdate=ge2019-01-01`` or
``Observation?code=...&value-concept=...``. A Patient expression selects those Patients; an expression
on another type selects the children those resources are about. Several filters are combined with AND.
Everything is evaluated with the caller's restriction, so a cohort never includes a child the caller
may not see.

A cohort is of children, not of records: a child registered by several agencies (linked by the identity
layer, ``fhir_server.identity``) is in it when the Group names, or its criteria find, any one of its
records the caller may see, and then brings all its records (``same_children``); the export's own
restriction still decides which of their resources leave. A record the caller may not see brings
nothing, not even the records linked to it, so a cohort cannot be used to learn who is linked to whom.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhir_server import definitions
from fhir_server.interactions.errors import FhirError
from fhir_server.search.access import Access
from fhir_server.search.query import InCompartments, parse_search
from fhir_server.search.values import date_range
from fhir_server.security.access import linked_patients, patient_links

MEMBER_FILTER = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter"
_FHIR_QUERY = "application/x-fhir-query"
_PAGE = 1000


def member_filters(group: dict[str, Any]) -> list[str]:
    """The FHIR query expressions of the Group's member-filter extensions (400 when malformed)."""
    out = []
    for n, ext in enumerate(group.get("extension", []) if isinstance(group.get("extension"), list) else []):
        if not isinstance(ext, dict) or ext.get("url") != MEMBER_FILTER:
            continue
        value = ext.get("valueExpression")
        where = f"Group.extension[{n}].valueExpression"
        if not isinstance(value, dict) or not isinstance(value.get("expression"), str):
            raise FhirError(
                400,
                "A member-filter extension needs a valueExpression with an expression",
                expression=[where],
            )
        if value.get("language") not in (None, _FHIR_QUERY):
            raise FhirError(
                400,
                f"member-filter expressions must be in {_FHIR_QUERY}",
                code="not-supported",
                expression=[where],
            )
        out.append(value["expression"].strip())
    return out


def check_group(group: dict[str, Any], base_url: str) -> None:
    """Refuse (400) a Group this server cannot turn into a cohort, before any job starts."""
    filters = member_filters(group)
    if group.get("characteristic") and not filters:
        raise FhirError(
            400,
            "Group.characteristic cannot be evaluated here: define the cohort with member-filter"
            " extensions (FHIR search expressions) or list its members",
            code="not-supported",
            expression=["Group.characteristic"],
        )
    for expression in filters:
        _parse_filter(expression, base_url)


def _parse_filter(expression: str, base_url: str) -> tuple[str, list[tuple[str, str]]]:
    rtype, sep, query = expression.partition("?")
    if not sep or not definitions.is_resource_type(rtype):
        raise FhirError(
            400,
            f"member-filter '{expression}' is not of the form Type?search-parameters",
            expression=["Group.extension"],
        )
    if rtype != "Patient" and rtype not in patient_links():
        raise FhirError(
            400,
            f"member-filter '{expression}': {rtype} resources are not about a child",
            expression=["Group.extension"],
        )
    params = parse_qsl(query, keep_blank_values=True)
    try:
        parse_search(rtype, params, base_url=base_url, strict=True, default_count=1, max_count=1)
    except FhirError as error:
        raise FhirError(
            400,
            f"member-filter '{expression}': {error.diagnostics}",
            code=error.code,
            expression=["Group.extension"],
        ) from None
    return rtype, params


def _listed(group: dict[str, Any]) -> set[str]:
    now = datetime.now(UTC).timestamp() * 1000
    members = set()
    for member in group.get("member", []) if isinstance(group.get("member"), list) else []:
        if not isinstance(member, dict) or member.get("inactive") is True:
            continue
        period = member.get("period")
        if isinstance(period, dict):
            end = date_range(period["end"]) if isinstance(period.get("end"), str) else None
            start = date_range(period["start"]) if isinstance(period.get("start"), str) else None
            if (end is not None and end[1] < now) or (start is not None and start[0] > now):
                continue
        ref = (member.get("entity") or {}).get("reference")
        if isinstance(ref, str):
            kind, _, id_ = ref.rstrip("/").split("/_history")[0].rpartition("/")
            if kind.endswith("Patient") and id_:
                members.add(id_)
    return members


async def _matching(store: Any, expression: str, access: Access | None, base_url: str) -> set[str]:
    rtype, params = _parse_filter(expression, base_url)
    from fhir_server.identity.conditional import search_params

    params = search_params((rtype,), params, None)  # golden records are no members (fhir_server.identity)
    query = parse_search(rtype, params, base_url=base_url, strict=True, default_count=_PAGE, max_count=_PAGE)
    query.access = access
    found: set[str] = set()
    after = 0
    while True:
        page = await store.scan(query, after, limit=_PAGE)
        for stored in page.resources:
            if rtype == "Patient":
                found.add(stored.id)
            else:
                found |= linked_patients(rtype, orjson.loads(stored.body))
        if page.last is None:
            return found
        after = page.last


async def visible_patients(store: Any, ids: set[str], access: Access | None) -> set[str]:
    """The children among ``ids`` whose Patient exists and the caller may see."""
    from fhir_server.search.query import SearchQuery

    found: set[str] = set()
    ordered = sorted(ids)
    for start in range(0, len(ordered), 5000):
        chunk = tuple(ordered[start : start + 5000])
        query = SearchQuery(("Patient",), (InCompartments("Patient", chunk, is_self=True),), access=access)
        after = 0
        while True:
            page = await store.scan(query, after, limit=_PAGE, max_bytes=16 << 20)
            found |= {s.id for s in page.resources}
            if page.last is None:
                break
            after = page.last
    return found


async def same_children(store: Any, records: set[str]) -> set[str]:
    """``records`` with every other record of the same children (their golden records included)."""
    from fhir_server.identity.book import current

    book = await current(store)
    return set(book.expand(frozenset(records)))


async def count_children(store: Any, records: list[str]) -> int:
    """How many children ``records`` are (a child's linked records count once)."""
    from fhir_server.identity.book import current

    book = await current(store)
    return len({book.child(record) or record for record in records})


async def members(store: Any, group: dict[str, Any], access: Access | None, base_url: str) -> list[str]:
    """The cohort: the Group's children the caller may see (every record of each), sorted."""
    filters = member_filters(group)
    if filters:
        cohort: set[str] | None = None
        for expression in filters:
            matched = await _matching(store, expression, access, base_url)
            cohort = matched if cohort is None else cohort & matched
        chosen = cohort or set()
    else:
        chosen = _listed(group)
    return sorted(await same_children(store, await visible_patients(store, chosen, access)))
