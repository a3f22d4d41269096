"""Which of a child's records an agency speaks for: serving a child, following the links safely.

An agency serves a child when it keeps a record of the child (``fhir_server.security.authority.
serves_child``, the one definition, asks here). Across agencies the links widen that only where a data
steward stands behind them, so that no agency gains anything through a link its own write made:

- an agency speaks for its own source records of the child, and for the golden record while every
  record of the child is its own;
- an agency whose record a data steward linked or confirmed (a manual link: ``$identity-link``, or a
  merge) speaks for every record of the child, the golden record included.

Automatic links (a write carrying a CID, G-code or passport the child already has) keep one child one
child for identity bookkeeping, ``$everything`` and ``:mdm``, but carry no authority: a CID is printed on
every ID card, so an agency that sends one (or registered it first, before the child's own agencies)
must not read the child's merged identity (addresses, guardians) nor record consent that opens the
other agencies' data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from fhir_server.identity import records
from fhir_server.identity.model import MANUAL, GoldenState, is_golden


def spoken_for(state: GoldenState, owners: Mapping[str, str | None], organization: str) -> frozenset[str]:
    """The ids (sources, and the golden record where it applies) of one child that ``organization``
    speaks for; ``owners`` maps a source id to the agency that wrote it."""
    mine = [link for link in state.links if owners.get(link.source) == organization]
    if not mine:
        return frozenset()
    if any(link.method == MANUAL for link in mine):
        return frozenset({*state.sources(), state.id})
    own = {link.source for link in mine}
    if len(own) == len(state.links):
        own.add(state.id)
    return frozenset(own)


async def records_spoken_for(reader: Any, organization: str, patient_id: str) -> frozenset[str]:
    """``spoken_for`` for the child ``Patient/patient_id`` belongs to, read from ``reader`` (an
    unrestricted store or transaction, so a Consent's authority is decided in its own transaction)."""
    from fhir_server.security.access import owner_of

    stored = await reader.read("Patient", patient_id)
    if stored is None or stored.deleted:
        return frozenset()
    resource = orjson.loads(stored.body)
    golden = records.Golden.of(stored) if is_golden(resource) else await records.golden_of(reader, patient_id)
    if golden is None:
        return frozenset({patient_id}) if owner_of(resource) == organization else frozenset()
    owners: dict[str, str | None] = {}
    for source in golden.state.sources():
        if source == patient_id:
            owners[source] = owner_of(resource)
            continue
        other = await reader.read("Patient", source)
        owners[source] = (
            owner_of(orjson.loads(other.body)) if other is not None and not other.deleted else None
        )
    return spoken_for(golden.state, owners, organization)


async def serves(reader: Any, organization: str, patient_id: str) -> bool:
    """Whether ``organization`` speaks for the record ``Patient/patient_id`` (see the module)."""
    return patient_id in await records_spoken_for(reader, organization, patient_id)
