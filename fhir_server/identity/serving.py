"""Which of a child's records an agency speaks for: serving a child, following the links safely.

An agency serves a child when it keeps a record of the child (``fhir_server.security.authority.
serves_child``, the one definition, asks here). Across agencies the links widen that, in one direction
only, so that a link never serves the agency whose own write made it:

- an agency speaks for its own source records of the child;
- for the records linked to the child *after* its own (those agencies' writes joined a child it already
  kept: they chose to add their record to it);
- for every record of the child once a data steward made or confirmed its link (a manual link, or a
  merge).

A link made automatically because an agency's write carried a CID the child already has gives that
agency nothing over the records that were there before: knowing a child's citizen ID must not open the
child's merged identity (addresses, guardians) nor let the agency record consent that opens the other
agencies' data. The golden record (the merged identity) is spoken for by an agency that speaks for all
of the child's records. A steward confirms a later agency's link (``$identity-link`` on its record)
when it should see the whole child.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from fhir_server.identity import records
from fhir_server.identity.model import MANUAL, GoldenState, is_golden


def spoken_for(state: GoldenState, owners: Mapping[str, str | None], organization: str) -> frozenset[str]:
    """The ids (sources, and the golden record when all of them) of one child that ``organization``
    speaks for. ``state.links`` is in the order the records joined the child; ``owners`` maps a source
    id to the agency that wrote it."""
    ranks = [-1 if link.method == MANUAL else position for position, link in enumerate(state.links)]
    own = [
        rank for rank, link in zip(ranks, state.links, strict=True) if owners.get(link.source) == organization
    ]
    if not own:
        return frozenset()
    first = min(own)
    covered = {link.source for rank, link in zip(ranks, state.links, strict=True) if rank >= first}
    if len(covered) == len(state.links):
        covered.add(state.id)
    return frozenset(covered)


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
