"""``Patient/[id]/$everything``: one child's record as a paged searchset Bundle.

It is a search over the child's record (``fhir_server.summary.record``: the Patient itself, every
resource of its Patient compartment, and the referral Tasks R4 leaves out of it) run through
``ctx.store``, so with auth on the caller's consent restriction sits inside the query exactly as for
``Patient/[id]/*``: pages stay full and nothing hidden leaks. Each page also carries the resources its
entries refer to (agencies, practitioners: ``search.mode = include``), as the operation asks.
Paging links point back at ``$everything`` with the search's own cursor.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fhir_server.interactions.errors import FhirError, bad_request, not_found
from fhir_server.interactions.search import build_bundle
from fhir_server.operations.registry import OperationRequest, OperationResult
from fhir_server.search.query import parse_search
from fhir_server.summary import record

_COMPARTMENT = "Patient"
_SUPPORTED = ("_since", "_type", "_count", "_cursor")
# A FHIR instant: full date-time with seconds and a time zone.
_INSTANT = re.compile(
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?"
    r"(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))$"
)


def _text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise bad_request("$everything parameters must be simple values", ["Parameters.parameter"])
    return str(value)


def _since(value: str) -> str:
    # An unencoded '+' in a query string arrives as a space: "…T10:00:00 07:00" means "+07:00".
    candidate = re.sub(r" (\d\d:\d\d)$", r"+\1", value.strip())
    if not _INSTANT.match(candidate):
        raise bad_request(
            f"_since must be a FHIR instant with a time zone (e.g. 2024-01-31T10:00:00+07:00), not {value!r}",
            ["_since"],
        )
    return candidate


def _types(value: str) -> list[str]:
    members = record.record_members()
    types = [t.strip() for t in value.split(",") if t.strip()]
    for t in types:
        if t != _COMPARTMENT and t not in members:
            raise bad_request(f"_type: {t!r} is not a resource type of a child's record", ["_type"])
    if not types:
        raise bad_request("_type needs at least one resource type", ["_type"])
    return types


def _search_params(parameters: dict[str, Any]) -> list[tuple[str, str]]:
    """The compartment search equivalent to the operation's parameters (400 for anything else)."""
    params: list[tuple[str, str]] = []
    types: list[str] = []
    for p in parameters.get("parameter", []) or []:
        name = p.get("name") if isinstance(p, dict) else None
        if name not in _SUPPORTED:
            raise bad_request(
                f"$everything does not take the parameter {name!r} (supported: {', '.join(_SUPPORTED)})",
                [str(name)] if isinstance(name, str) else ["Parameters.parameter"],
            )
        values = [v for k, v in p.items() if k.startswith("value")]
        if len(values) != 1:
            raise bad_request(f"The parameter {name!r} needs one value", [name])
        value = _text(values[0])
        if name == "_since":
            params.append(("_lastUpdated", "ge" + _since(value)))
        elif name == "_type":
            types.extend(_types(value))
        else:
            params.append((name, value))
    if types:
        params.append(("_type", ",".join(dict.fromkeys(types))))
    params.append(("_include", "*"))
    return params


def _operation_link(url: str, base: str) -> str:
    """A compartment-search link rewritten as the same page of ``$everything``."""
    query: list[tuple[str, str]] = []
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name == "_lastUpdated" and value.startswith("ge"):
            query.append(("_since", value[2:]))
        elif name in _SUPPORTED:
            query.append((name, value))
    return f"{base}?{urlencode(query)}" if query else base


async def everything(request: OperationRequest) -> OperationResult:
    """The Patient and its compartment, filtered by ``_since``/``_type``, ``_count`` per page."""
    ctx, patient_id = request.context, request.id
    assert patient_id is not None  # registered at instance level only
    params = _search_params(request.parameters)
    stored = await ctx.store.read(_COMPARTMENT, patient_id)  # hidden patients read as unknown
    if stored is None:
        raise not_found(f"Patient/{patient_id} is not known")
    if stored.deleted:
        raise FhirError(410, f"Patient/{patient_id} was deleted", code="deleted")
    settings = ctx.settings
    query = parse_search(
        None,
        params,
        base_url=ctx.base_url,
        strict=ctx.strict,
        default_count=settings.default_page_size,
        max_count=settings.max_page_size,
    )
    record.restrict_to_record(query, await record.child_patient_ids(ctx, patient_id))
    page = await ctx.store.search(query)
    bundle = build_bundle(ctx, None, query, page, (_COMPARTMENT, patient_id))
    base = f"{ctx.base_url}/{_COMPARTMENT}/{patient_id}/$everything"
    for link in bundle.get("link", []):
        link["url"] = _operation_link(link["url"], base)
    return OperationResult(bundle)
