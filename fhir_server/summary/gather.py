"""Read the child's record the way the caller may see it: a search per type over the record, through
``ctx.store`` (the consent guard with auth on), paged until done, with the agencies it refers to."""

from __future__ import annotations

from datetime import date

import orjson

from fhir_server.interactions.context import RequestContext
from fhir_server.search.query import decode_cursor, parse_search
from fhir_server.storage.base import StoredResource
from fhir_server.summary import record
from fhir_server.summary.model import Record

_PAGE = 1000
# Referenced resources worth naming in a summary (agencies and people acting for them).
_NAMED = ("Organization", "Practitioner", "PractitionerRole", "Location", "RelatedPerson")


async def gather(
    ctx: RequestContext,
    stored_patient: StoredResource,
    patient_ids: list[str],
    types: tuple[str, ...],
    today: date,
) -> Record:
    patient = orjson.loads(stored_patient.body)
    found = Record(ctx.base_url, stored_patient.id, patient_ids, patient, today, {"Patient": [patient]})
    found.raw[("Patient", stored_patient.id)] = stored_patient.body
    types = tuple(dict.fromkeys(("Patient", *types)))  # the Patient again, for the agencies it names
    seen: set[tuple[str, str]] = {("Patient", stored_patient.id)}
    # One search per type: each is a few index look-ups, where one search over every type at once
    # (a disjunction of compartments) makes SQLite scan (about 2 s on a 1M-resource store, not 5 ms).
    for rtype in types:
        params = [("_type", rtype), ("_count", str(_PAGE)), ("_include", "*")]
        query = parse_search(
            None, params, base_url=ctx.base_url, strict=False, default_count=_PAGE, max_count=_PAGE
        )
        record.restrict_to_record(query, patient_ids)
        if not query.resource_types:
            continue
        while True:
            page = await ctx.store.search(query)
            for stored in page.matches:
                if (stored.resource_type, stored.id) in seen:
                    continue
                seen.add((stored.resource_type, stored.id))
                found.by_type.setdefault(stored.resource_type, []).append(orjson.loads(stored.body))
                found.raw[(stored.resource_type, stored.id)] = stored.body
            for stored in page.included:
                if stored.resource_type in _NAMED:
                    found.referenced[f"{stored.resource_type}/{stored.id}"] = orjson.loads(stored.body)
                    found.raw[(stored.resource_type, stored.id)] = stored.body
            if not page.next_cursor:
                break
            query.cursor = decode_cursor(page.next_cursor)
    await _parent_agencies(ctx, found)
    return found


async def _parent_agencies(ctx: RequestContext, found: Record) -> None:
    """The organisations a named agency is part of (a childcare centre's district office), so every
    reference in the document resolves inside it; read through the caller's view like the rest."""
    pending = [r for r in found.referenced.values() if r.get("resourceType") == "Organization"]
    while pending:
        part_of = pending.pop().get("partOf")
        ref = part_of.get("reference") if isinstance(part_of, dict) else None
        if not isinstance(ref, str) or not ref.startswith("Organization/") or ref in found.referenced:
            continue
        stored = await ctx.store.read("Organization", ref.split("/", 1)[1])
        if stored is None or stored.deleted:
            continue
        parent = orjson.loads(stored.body)
        found.referenced[ref] = parent
        found.raw[("Organization", stored.id)] = stored.body
        pending.append(parent)
