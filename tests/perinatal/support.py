"""What the perinatal and generated-43-file tests share: registering the agencies, importing a 43-file
folder over the transaction endpoint, and reading back what a caller sees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhir_server.cli.importer import profile_validator, validate_record
from fhir_server.mapping import RowError, batch_records, map_files
from tests.security import scene
from tests.security.conftest import Caller, World

IMPORTED_KINDS = (
    "Patient", "RelatedPerson", "EpisodeOfCare", "Encounter", "Procedure", "Observation", "Condition",
    "Immunization", "MedicationAdministration", "ServiceRequest",
)


async def agencies(world: World, *oids: str) -> list[Caller]:
    """One caller per agency id (``hosp`` is a hospital, any other a health centre), each registered
    and with its Organization written by an admin."""
    admin = await world.caller("admin", "Organization/ops", "admin")
    callers = []
    for oid in oids:
        kind = "hospital" if oid == "hosp" else "health-centre"
        await world.set_agency(f"Organization/{oid}", kind)
        assert (await admin.put(f"Organization/{oid}", scene.agency(oid, kind))).status_code in (200, 201)
        callers.append(await world.caller(oid, f"Organization/{oid}", kind))
    return callers


async def import_moph43(centre: Caller, folder: Path, per_bundle: int) -> None:
    """Map a 43-file folder (no row error, no warning, every record valid) and post it in batches."""
    check = profile_validator()
    records = []
    for item in map_files("moph43", [folder]):
        assert not isinstance(item, RowError), item
        assert item.warnings == []
        assert check is None or validate_record(item, check) == []
        records.append(item)
    for bundle, _carried in batch_records(records, per_bundle):
        reply = await centre.post("", bundle)
        assert reply.status_code == 200, reply.text[:2000]


async def seen(caller: Caller, query: str) -> list[dict[str, Any]]:
    """The resources a search matches (one page of up to 1,000)."""
    reply = await caller.get(f"{query}{'&' if '?' in query else '?'}_count=1000")
    assert reply.status_code == 200, reply.text
    entries = reply.json().get("entry", [])
    return [e["resource"] for e in entries if e.get("search", {}).get("mode") == "match"]


async def versions(caller: Caller) -> dict[str, str]:
    """Every imported resource the caller sees, with its version: a re-import must not move one."""
    return {
        f"{kind}/{r['id']}": r["meta"]["versionId"]
        for kind in IMPORTED_KINDS
        for r in await seen(caller, kind)
    }
