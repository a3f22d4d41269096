"""Agencies named by identifier, resolved to the agency the server's registry holds for it.

Importers name agencies the way their files do: a MOPH facility code, a school code, an MSDHS office
code (``{"identifier": {"system": ..., "value": ...}}`` with no ``reference``). The server adds the
``reference`` (``Organization/ID``) of the agency an administrator registered with that identifier
(``termtem agency set ... --identifier SYSTEM|VALUE``), keeping the identifier and display, so inbox
searches (``Task?owner=Organization/ID``) and the assigned agency's rights work for imported referrals.

Only the registry counts: an Organization resource can be written by any agency, so trusting its
identifiers would let one agency make itself the assignee of another's referrals. An identifier two
registered agencies share resolves to neither. When an agency is registered (or given an identifier)
later, ``resolve_stored`` brings the stored referrals that name it up to date (a job, see ``jobs.py``).
"""

from __future__ import annotations

from typing import Any

from fhir_server.security.agencies import AgencyRegistry

# Per resource type, the elements that name an agency (single references or lists of them).
AGENCY_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Task": ("owner", "requester"),
    "ServiceRequest": ("requester", "performer"),
    "EpisodeOfCare": ("managingOrganization",),
    "Communication": ("sender", "recipient"),
}
# The reference search parameters those elements are indexed under (``:identifier`` finds them).
SEARCH_CODES: dict[str, tuple[str, ...]] = {
    "Task": ("owner", "requester"),
    "ServiceRequest": ("requester", "performer"),
    "EpisodeOfCare": ("organization",),
    "Communication": ("sender", "recipient"),
}


async def identifier_index(store: Any) -> dict[str, str]:
    """``system|value`` -> ``Organization/ID`` for identifiers exactly one registered agency holds."""
    owners: dict[str, set[str]] = {}
    for record in await AgencyRegistry(store).list():
        for identifier in record.identifiers:
            owners.setdefault(identifier, set()).add(record.organization)
    return {key: next(iter(orgs)) for key, orgs in owners.items() if len(orgs) == 1}


def _unresolved(item: Any) -> str | None:
    """``system|value`` of a reference that names an agency by identifier only."""
    if not isinstance(item, dict) or item.get("reference"):
        return None
    identifier = item.get("identifier")
    if not isinstance(identifier, dict):
        return None
    system, value = identifier.get("system"), identifier.get("value")
    if not isinstance(system, str) or not isinstance(value, str) or not system or not value:
        return None
    return f"{system}|{value}"


def needs_resolving(resource_type: str, resource: dict[str, Any]) -> bool:
    for element in AGENCY_ELEMENTS.get(resource_type, ()):
        value = resource.get(element)
        if any(_unresolved(item) for item in (value if isinstance(value, list) else [value])):
            return True
    return False


def resolve(resource_type: str, resource: dict[str, Any], index: dict[str, str]) -> set[str]:
    """Add the agency reference to identifier-only references ``index`` knows; returns the elements
    changed (``resource`` is changed in place)."""
    changed: set[str] = set()
    for element in AGENCY_ELEMENTS.get(resource_type, ()):
        value = resource.get(element)
        items = value if isinstance(value, list) else [value]
        new_items = []
        for item in items:
            key = _unresolved(item)
            if key is not None and key in index:
                item = {"reference": index[key], **item}
                changed.add(element)
            new_items.append(item)
        if element in changed:
            resource[element] = new_items if isinstance(value, list) else new_items[0]
    return changed


async def resolve_for_write(store: Any, resource_type: str, resource: dict[str, Any]) -> set[str]:
    """``resolve`` with the registry as it is now (read only when something needs resolving)."""
    if not needs_resolving(resource_type, resource):
        return set()
    return resolve(resource_type, resource, await identifier_index(store))


async def resolve_stored(store: Any) -> list[str]:
    """Bring stored resources that name a now-registered agency by identifier only up to date: each gets
    the agency's reference in a new version written by the server (``changed-by`` = server). Run after
    the agency registry changes (``termtem agency set``, ``termtem client add --agency-id``). Returns
    the resources changed (``Type/id``)."""
    import orjson

    from fhir_server import fhirjson
    from fhir_server.interactions import writes
    from fhir_server.search.query import parse_search
    from fhir_server.workflow.referrals import CHANGED_BY, set_tag

    index = await identifier_index(store)
    changed: list[str] = []
    for resource_type, codes in SEARCH_CODES.items():
        candidates: set[str] = set()
        for key in index:
            for code in codes:
                query = parse_search(
                    resource_type,
                    [(f"{code}:identifier", key), ("_count", "1000")],
                    base_url="",
                    strict=True,
                    default_count=1000,
                    max_count=1000,
                )
                page = await store.search(query)
                candidates.update(m.id for m in page.matches)
        for resource_id in sorted(candidates):
            async with store.transaction() as tx:
                current = await tx.read(resource_type, resource_id)
                if current is None or current.deleted:
                    continue
                resource = orjson.loads(current.body)
                members = resolve(resource_type, resource, index)
                if not members:
                    continue
                set_tag(resource, CHANGED_BY, "server", "agency registry: identifier resolved")
                body = current.body
                for name in sorted(members):
                    body = fhirjson.replace_member(body, name, resource[name])
                await writes.write_version(
                    tx, resource_type, resource_id, resource, body, current=current, method="PUT"
                )
            changed.append(f"{resource_type}/{resource_id}")
    return changed
