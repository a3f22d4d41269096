"""Conditional writes on Patient find the writing agency's own source record.

Several agencies hold a record of one child, and the golden record carries the child's identifiers
too, so ``Patient?identifier=<CID>`` would match them all. A conditional create, update, patch or
delete (and a conditional reference in a bundle) is an agency's statement about its own record: its
criteria are applied to that agency's source records only (never to golden records), so re-imports
stay idempotent however many agencies know the child. When an agency does hold several, the error
names the child, the identifier and the records.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from fhir_server.identity import records
from fhir_server.identity.model import GOLDEN, RETIRED, TAG_SYSTEM
from fhir_server.interactions.context import RequestContext
from fhir_server.storage.base import StoredResource


def writer_agency(ctx: RequestContext) -> str | None:
    """The agency a write is made for (``Organization/ID``), when there is one (auth on, or a load
    with ``--agency``); None for trials with auth off, where every record is the server's."""
    principal = ctx.principal
    if principal is None:
        guard = getattr(ctx.store, "guard", None)
        principal = getattr(guard, "principal", None)
    organization = getattr(principal, "organization", None)
    return organization if isinstance(organization, str) and organization else None


def own_records_query(ctx: RequestContext, query: str) -> str:
    """``query`` narrowed to the writer's own source Patients."""
    from fhir_server.security.access import OWNER_TAG_SYSTEM

    params = parse_qsl(query, keep_blank_values=True)
    params += [("_tag:not", f"{TAG_SYSTEM}|{GOLDEN}"), ("_tag:not", f"{TAG_SYSTEM}|{RETIRED}")]
    agency = writer_agency(ctx)
    if agency is not None:
        params.append(("_tag", f"{OWNER_TAG_SYSTEM}|{agency}"))
    return urlencode(params)


def _name(resource: dict[str, Any]) -> str:
    for name in resource.get("name", []) if isinstance(resource.get("name"), list) else []:
        if isinstance(name, dict):
            if isinstance(name.get("text"), str):
                return name["text"]
            given = " ".join(g for g in name.get("given", []) if isinstance(g, str))
            return f"{given} {name.get('family', '')}".strip()
    return "no name"


async def duplicates_detail(tx: Any, query: str, found: list[StoredResource]) -> str:
    """What to tell an agency whose conditional write matched several of its own records."""
    from fhir_server.identity.hooks import unguarded

    criteria = "&".join(
        f"{k}={v}" for k, v in parse_qsl(query, keep_blank_values=True) if not k.startswith("_tag")
    )
    ids = [s.id for s in found]
    goldens = await records.goldens_of(unguarded(tx), ids)
    children = []
    for golden in {g.id: g for g in goldens.values()}.values():
        content = golden.content
        born = content.get("birthDate", "birth date unknown")
        children.append(f"Patient/{golden.id} ({_name(content)}, born {born})")
    first = orjson.loads(found[0].body) if found[0].body else {}
    child = " and ".join(children) or f"{_name(first)}, born {first.get('birthDate', 'unknown')}"
    return (
        f"{len(found)} of this agency's own Patient records match {criteria}:"
        f" {', '.join('Patient/' + i for i in ids)}; the child is {child}."
        " Keep one record per child: delete the duplicate (or remove the identifier from it), then retry."
    )


def _asks_for_golden(params: list[tuple[str, str]]) -> bool:
    for name, value in params:
        code = name.split(":", 1)[0]
        if code in ("_id", "link") or (code == "_tag" and TAG_SYSTEM in value):
            return True
    return False


def search_params(
    resource_types: tuple[str, ...] | None, params: list[tuple[str, str]], compartment: Any
) -> list[tuple[str, str]]:
    """Golden records take part in a search only when it asks for them.

    Searches are how agencies find the records they wrote; a server-managed record in their results
    would be counted twice and could be referenced by mistake. A search that names the identity tag
    (``_tag=<IDENTITY_TAG_SYSTEM>|golden``), an ``_id`` or ``link`` reaches them, as do reads,
    ``$everything``, ``$match`` and the ``:mdm`` expansion. The exclusion is added as ordinary
    ``_tag:not`` parameters, so the Bundle's self link shows it.
    """
    if compartment is not None or _asks_for_golden(params):
        return params
    if resource_types is not None and "Patient" not in resource_types:
        return params
    return [*params, ("_tag:not", f"{TAG_SYSTEM}|{GOLDEN}"), ("_tag:not", f"{TAG_SYSTEM}|{RETIRED}")]
