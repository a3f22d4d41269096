"""Which agencies serve a child: those keeping a record of it, any of the records linked to it.

``fhir_server.security.authority.serves_child`` (the one definition of "serves the child") asks here,
so an agency whose own source record is linked to the child's golden record serves the child whichever
of its records (golden or another agency's source) a Consent names.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.identity import records
from fhir_server.identity.model import is_golden


async def child_records(reader: Any, patient_id: str) -> list[dict[str, Any]]:
    """The current content of every source record of the child ``patient_id`` belongs to (itself
    included when it is a source record). ``reader`` is an unrestricted store or transaction."""
    stored = await reader.read("Patient", patient_id)
    if stored is None or stored.deleted:
        return []
    resource = orjson.loads(stored.body)
    golden = records.Golden.of(stored) if is_golden(resource) else await records.golden_of(reader, patient_id)
    if golden is None:
        return [resource]
    out = [] if is_golden(resource) else [resource]
    for source in golden.state.sources():
        if source == patient_id:
            continue
        other = await reader.read("Patient", source)
        if other is not None and not other.deleted:
            out.append(orjson.loads(other.body))
    return out


async def serving_agencies(reader: Any, patient_id: str) -> set[str]:
    """``Organization/ID`` of every agency that keeps a record of the child."""
    from fhir_server.security.access import owner_of

    return {owner for r in await child_records(reader, patient_id) if (owner := owner_of(r)) is not None}
