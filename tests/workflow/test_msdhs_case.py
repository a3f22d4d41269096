"""An imported MSDHS case over HTTP with auth on: its referrals name offices by code, the office it names
receives and closes its referral, and an agency registered later gets the referral addressed to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fhir_server import canonical
from fhir_server.mapping import RowError, batch_records, map_files
from fhir_server.workflow.agencies import resolve_stored
from tests.mapping.golden import MAPPINGS
from tests.security.conftest import Caller, World, agency
from tests.workflow.referral_data import moved

MSDHS = canonical.MSDHS_AGENCY_SYSTEM


async def _import(caller: Caller, sample: Path) -> None:
    records = [item for item in map_files("msdhs-case", [sample]) if not isinstance(item, RowError)]
    assert records
    for bundle, _ in batch_records(records, 50):
        reply = await caller.post("", bundle)
        assert reply.status_code == 200, reply.text


def _case(tmp: Path) -> Path:
    """The shipped sample case, with a consent still in force today."""
    case = json.loads((MAPPINGS / "msdhs-case" / "samples" / "case-000123.json").read_text())
    case["consent"]["until"] = "2575-05-13"
    path = tmp / "case.json"
    path.write_text(json.dumps(case, ensure_ascii=False))
    return path


def _only(bundle: dict[str, Any]) -> dict[str, Any]:
    matches = [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
    assert len(matches) == 1, matches
    return matches[0]


async def test_an_imported_case_is_received_and_closed_by_the_office_it_names(world: World) -> None:
    admin = await world.caller("admin", "Organization/ops", "admin")
    for oid, kind, code in (
        ("shs1033", "social-welfare", "BKK-SHS-1033"),
        ("do1033", "district-office", "BKK-DO-1033"),
    ):
        await world.set_agency(f"Organization/{oid}", kind, f"{MSDHS}|{code}")
        assert (await admin.put(f"Organization/{oid}", agency(oid, kind))).status_code in (200, 201)
    centre = await world.caller("shs-importer", "Organization/shs1033", "social-worker")
    office = await world.caller("district-office", "Organization/do1033", "social-worker")
    await _import(centre, _case(world.tmp))

    # The case itself, managed by the centre that reported it.
    case = _only(
        (await centre.get(f"EpisodeOfCare?identifier={canonical.MSDHS_CASE_SYSTEM}|MSDHS-2567-000123")).json()
    )
    assert case["managingOrganization"]["reference"] == "Organization/shs1033"
    # The district office finds the referral addressed to it by its code, and works on it.
    task = _only((await office.get("Task?owner=Organization/do1033")).json())
    assert task["owner"]["identifier"]["value"] == "BKK-DO-1033"
    assert task["restriction"]["period"]["end"] == "2024-06-14"  # the due date the case gave
    for status, extra in (
        ("received", {}),
        ("accepted", {}),
        ("in-progress", {"executionPeriod": {"start": "2024-05-20"}}),
        (
            "completed",
            {
                "executionPeriod": {"start": "2024-05-20", "end": "2024-06-10"},
                "output": [
                    {"type": {"text": "birth registration"}, "valueString": "registered on 2024-06-10"}
                ],
            },
        ),
    ):
        current = (await office.get(f"Task/{task['id']}")).json()
        reply = await office.put(f"Task/{task['id']}", moved(current, status, **extra))
        assert reply.status_code == 200, reply.text
    request_id = task["basedOn"][0]["reference"]
    closed = (await centre.get(request_id)).json()
    assert closed["status"] == "completed"
    assert [t["code"] for t in closed["meta"]["tag"] if t["system"].endswith("/changed-by")] == [
        "Organization/do1033"
    ]

    # The school the case also referred to was not registered at import: its referral names it by code,
    # is overdue already (education, routine: 30 days from 2024-05-14) and nobody's inbox holds it.
    school_task = _only((await centre.get("Task?owner:identifier=" + f"{MSDHS}|3110330012")).json())
    assert "reference" not in school_task["owner"]
    assert school_task["restriction"]["period"]["end"] == "2024-06-13"
    assert _only(
        (await centre.get("Task?overdue=true&requester:identifier=" + f"{MSDHS}|BKK-SHS-1033")).json()
    )
    # Registered later (as `termtem agency set` does), the school gets it: reference, inbox, rights.
    await world.set_agency("Organization/school-kt", "school", f"{MSDHS}|3110330012")
    resolved = set(await resolve_stored(world.store))
    assert resolved == {f"Task/{school_task['id']}", school_task["basedOn"][0]["reference"]}
    school = await world.caller("school-kt-app", "Organization/school-kt", "school")
    mine = _only((await school.get("Task?owner=Organization/school-kt")).json())
    assert mine["id"] == school_task["id"] and mine["owner"]["reference"] == "Organization/school-kt"
    assert (await school.put(f"Task/{mine['id']}", moved(mine, "received"))).status_code == 200
