"""One child's record: which Patient ids it spans and which resources belong to it.

``$everything`` and ``$summary`` both start here, so the day the identity layer links an agency's
source Patients to one child, ``child_patient_ids`` is the one place that widens both.

The record is the R4 Patient compartment plus what R4 leaves out of it but a child's services hold
about the child: a referral's ``Task`` names the child in ``Task.for`` and is not a compartment member.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_server import definitions
from fhir_server.interactions.context import RequestContext
from fhir_server.search import registry
from fhir_server.search.query import AnyOf, Compartment, SearchQuery

PATIENT = "Patient"
# Types outside the R4 Patient compartment that belong to a child's record: type -> reference
# parameters naming the child.
_BEYOND_COMPARTMENT: dict[str, tuple[str, ...]] = {"Task": ("subject",)}


async def child_patient_ids(ctx: RequestContext, patient_id: str) -> list[str]:
    """The Patient ids holding this child's data that the caller may use, ``patient_id`` first.

    The identity layer's links: the child's golden record and every agency's source record linked
    to it (``fhir_server.identity.links``). Consent still decides, per resource, what of each the
    caller sees: these ids only say whose data to look for.
    """
    from fhir_server.identity.links import child_patient_ids as linked

    return await linked(ctx.store, patient_id)


@cache
def record_members() -> dict[str, tuple[str, ...]]:
    """Resource type -> reference parameter codes that place a resource in a child's record."""
    members = {t: tuple(codes) for t, codes in definitions.compartment(PATIENT).items()}
    for rtype, codes in _BEYOND_COMPARTMENT.items():
        members[rtype] = tuple(dict.fromkeys((*members.get(rtype, ()), *codes)))
    return members


def record_types() -> tuple[str, ...]:
    """Every type a child's record can hold, the Patient first."""
    return (PATIENT, *sorted(record_members()))


def record_condition(types: tuple[str, ...], patient_ids: list[str]) -> Any:
    """The query condition "belongs to one of these Patients' records" over ``types``."""
    members = record_members()
    options: list[Any] = []
    for rtype in types:
        for pid in patient_ids:
            if rtype == PATIENT:
                options.append(Compartment(PATIENT, pid, (), is_self=True))
                continue
            keys = tuple(p.key for c in members.get(rtype, ()) if (p := registry.get(rtype, c)) is not None)
            if keys:
                options.append(Compartment(PATIENT, pid, keys))
    if not options:
        raise ValueError(f"none of {types} belongs to a Patient's record")
    return options[0] if len(options) == 1 else AnyOf(tuple(options))


def restrict_to_record(query: SearchQuery, patient_ids: list[str]) -> None:
    """Narrow a parsed system search to the record of ``patient_ids`` (types outside it are dropped)."""
    members = record_members()
    query.resource_types = tuple(t for t in query.resource_types if t == PATIENT or t in members)
    query.conditions = (record_condition(query.resource_types, patient_ids), *query.conditions)
