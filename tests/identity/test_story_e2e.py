"""The story from issue 14, over HTTP with auth on: one child, three agencies, a school's view.

A childcare centre imports its DSPM sheet, a health centre its MOPH 43-file export, a hospital POSTs
the child with If-None-Exist: one golden child, three linked source records. A guardian's consent,
recorded by the health centre, lets schools see demographics, growth and development: the school's
``$everything`` brings exactly that from all three agencies, and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_server import canonical
from fhir_server.mapping import RowError, batch_records, map_files
from fhir_server.mapping.spec import MAPPINGS_DIR
from fhir_server.security.access import OWNER_TAG_SYSTEM, data_class
from tests.identity.helpers import CID, GOLDEN_TAG, link_states
from tests.security.conftest import Caller, World
from tests.security.scene import GROWTH, consent, observation

KITTI = "1103700123458"
ALLOWED = {"demographics", "growth", "development"}


async def _import(caller: Caller, format_name: str, sample: str) -> None:
    """What ``termtem import --server`` sends: mapped records as transaction bundles."""
    records = [
        r
        for r in map_files(format_name, [MAPPINGS_DIR / format_name / "samples" / sample])
        if not isinstance(r, RowError)
    ]
    for bundle, _ in batch_records(records, 50):
        reply = await caller.post("", bundle)
        assert reply.status_code == 200, reply.text


def _owner(resource: dict[str, Any]) -> str | None:
    return next(
        (t["code"] for t in resource.get("meta", {}).get("tag", []) if t["system"] == OWNER_TAG_SYSTEM), None
    )


def _class(resource: dict[str, Any]) -> str:
    return data_class(resource["resourceType"], resource.get("meta", {}).get("profile", []))


def _matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


async def _everything(caller: Caller, patient: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    url: str | None = f"Patient/{patient}/$everything?_count=50"
    while url:
        reply = await caller.get(url)
        assert reply.status_code == 200, reply.text
        found += _matches(reply.json())
        url = next((lk["url"] for lk in reply.json()["link"] if lk["relation"] == "next"), None)
    return found


@pytest.mark.slow
async def test_one_child_three_agencies_and_the_school_sees_what_consent_allows(world: World) -> None:
    admin = await world.caller("admin", "Organization/ops", "admin")
    childcare = await world.caller("cc-app", "Organization/cc", "childcare")
    health = await world.caller("hc-app", "Organization/hc", "health-centre")
    hospital = await world.caller("hosp-app", "Organization/hosp", "hospital")
    school = await world.caller("school-app", "Organization/school1", "school")

    await _import(childcare, "bma-childcare-dspm", "dspm-2567-utf8-bom.csv")
    await _import(health, "moph43", "export-utf8")
    reply = await hospital.post(
        "Patient",
        {
            "resourceType": "Patient",
            "identifier": [{"system": CID, "value": KITTI}],
            "name": [{"text": "เด็กชายกิตติ ศรีสุข", "given": ["กิตติ"], "family": "ศรีสุข"}],
            "gender": "male",
            "birthDate": "2021-03-15",
        },
        If_None_Exist=f"identifier={CID}|{KITTI}",
    )
    assert reply.status_code == 201, reply.text
    in_hospital = reply.json()["id"]
    await hospital.create(observation(in_hospital, GROWTH, "weight"))
    await hospital.create(observation(in_hospital, None, "diagnosis"))  # health-condition: not shared

    # Re-importing changes nothing: each agency's conditional writes find its own record.
    await _import(health, "moph43", "export-utf8")
    await _import(childcare, "bma-childcare-dspm", "dspm-2567-utf8-bom.csv")

    goldens = (await admin.get(f"Patient?identifier={CID}|{KITTI}&_tag={GOLDEN_TAG}")).json()["entry"]
    assert len(goldens) == 1
    golden = goldens[0]["resource"]
    sources = link_states(golden)
    assert len(sources) == 3
    owners = {}
    for source in sources:
        owners[_owner((await admin.get(f"Patient/{source}")).json())] = source
    assert set(owners) == {"Organization/cc", "Organization/hc", "Organization/hosp"}

    # Before any consent the school sees nothing of the child, golden record included.
    assert "entry" not in (await school.get(f"Patient?identifier={CID}|{KITTI}")).json()
    assert (await school.get(f"Patient/{golden['id']}")).status_code == 404
    assert (await school.get(f"Patient/{owners['Organization/hosp']}/$everything")).status_code == 404

    # Each agency's write linked its own record to the child: automatic links carry no authority
    # (fhir_server.identity.serving), so no agency reads the merged identity or speaks for the others'
    # records until a data steward confirms its link; here the health centre's.
    for agency in (childcare, health, hospital):
        assert (await agency.get(f"Patient/{golden['id']}")).status_code == 404
    confirm = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "source", "valueReference": {"reference": f"Patient/{owners['Organization/hc']}"}},
            {"name": "target", "valueReference": {"reference": f"Patient/{golden['id']}"}},
        ],
    }
    assert (await admin.post("Patient/$identity-link", confirm)).status_code == 200
    assert (await health.get(f"Patient/{golden['id']}")).status_code == 200

    # The guardian's consent, recorded by the health centre (now speaking for the whole child).
    mother = next(
        e["resource"]["id"]
        for e in (await health.get(f"RelatedPerson?patient=Patient/{owners['Organization/hc']}")).json()[
            "entry"
        ]
    )
    agreement = consent(
        owners["Organization/hc"], actors=("Organization/school1",), classes=tuple(sorted(ALLOWED))
    )
    agreement["performer"] = [{"reference": f"RelatedPerson/{mother}"}]
    assert (await health.post("Consent", agreement)).status_code == 201

    # The school finds the child's records it may see, and asks for everything about it.
    listed = (await school.get(f"Patient?identifier={CID}|{KITTI}")).json()
    visible = {e["resource"]["id"] for e in listed["entry"]}
    assert visible == set(sources)  # every agency's record (demographics consented), no golden record
    seen = await _everything(school, owners["Organization/hosp"])
    everything = await _everything(admin, golden["id"])

    by_agency: dict[str, set[str]] = {}
    for resource in seen:
        assert _class(resource) in ALLOWED, resource["resourceType"]
        if resource["id"] != golden["id"]:
            by_agency.setdefault(_owner(resource) or "?", set()).add(_class(resource))
    assert set(by_agency) == {"Organization/cc", "Organization/hc", "Organization/hosp"}
    assert "development" in by_agency["Organization/cc"]  # the childcare DSPM screening
    assert "growth" in by_agency["Organization/hc"]  # the health centre's NUTRITION
    assert "growth" in by_agency["Organization/hosp"]
    # Nothing else: exactly the allowed part of the child's whole record across agencies.
    expected = {(r["resourceType"], r["id"]) for r in everything if _class(r) in ALLOWED}
    assert {(r["resourceType"], r["id"]) for r in seen} == expected
    hidden = {(r["resourceType"], _class(r)) for r in everything} - {
        (r["resourceType"], _class(r)) for r in seen
    }
    assert ("Observation", "health-condition") in hidden and ("Immunization", "immunization") in hidden
    assert ("RelatedPerson", "family") in hidden
    # The golden record is the child's identity: agencies serving the whole child see it, and the
    # school now too, since the consent shares demographics (each agency's record of them) with it.
    assert ("Patient", golden["id"]) in expected
    assert (await school.get(f"Patient/{golden['id']}")).status_code == 200
    assert (await health.get(f"Patient/{golden['id']}")).status_code == 200
    # Audited: the school's look at the child names the records it saw.
    events = [
        e
        for e in await world.audit_events()
        if e["agent"][0]["who"].get("identifier", {}).get("value") == "school-app"
        and e["subtype"][0]["code"] == "operation"
    ]
    named = {x["what"]["reference"] for e in events for x in e.get("entity", []) if "what" in x}
    assert {f"Patient/{s}" for s in sources} <= named


def test_samples_hold_the_child() -> None:
    """The story's premise: both legacy samples carry child 1103700123458."""
    for fmt, sample in (("bma-childcare-dspm", "dspm-2567-utf8-bom.csv"), ("moph43", "export-utf8")):
        records = [
            r
            for r in map_files(fmt, [MAPPINGS_DIR / fmt / "samples" / sample])
            if not isinstance(r, RowError)
        ]
        text = orjson.dumps([r.entries for r in records])
        assert KITTI.encode() in text, fmt
    assert Path(MAPPINGS_DIR).is_dir() and canonical.CID_SYSTEM == CID
