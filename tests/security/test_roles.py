"""Positive paths for every role, emergency access, and the auditor's "who looked at this child"."""

from __future__ import annotations

from typing import Any

from tests.security import scene
from tests.security.conftest import World


def _types(bundle: dict[str, Any]) -> list[str]:
    return sorted(e["resource"]["resourceType"] for e in bundle.get("entry", []))


async def test_hospital_and_health_centre_write_and_read_their_own(world: World) -> None:
    s = await scene.build(world)
    centre = await world.caller("centre", "Organization/cc", "health-centre")
    patient = await centre.create({"resourceType": "Patient", "gender": "male", "birthDate": "2021-05-05"})
    imm = {
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": {"text": "BCG"},
        "patient": {"reference": f"Patient/{patient['id']}"},
        "occurrenceDateTime": "2021-05-06",
    }
    created = await centre.create(imm)
    assert (await centre.get(f"Immunization/{created['id']}")).status_code == 200
    assert (await centre.get(f"Patient/{patient['id']}")).status_code == 200
    assert (await s.hospital.get(f"Patient/{patient['id']}")).status_code == 404
    assert (await s.hospital.get("Patient?_summary=count")).json()["total"] == 2


async def test_childcare_by_agency_type_and_social_worker_by_actor(world: World) -> None:
    s = await scene.build(world)
    childcare = await world.caller("cc-app", "Organization/cc", "childcare")
    worker = await world.caller("sw-app", "Organization/sw", "social-worker")
    assert (await childcare.get("Patient/child2")).status_code == 404
    await s.hospital.create(scene.consent("child2", agency_types=("childcare-centre",), classes=("growth",)))
    await s.hospital.create(
        scene.consent(
            "child2",
            actors=("Organization/sw",),
            purposes=("CAREMGT",),
            classes=("health-condition", "demographics"),
        )
    )
    assert (await childcare.get(f"Observation/{s.ids['child2-growth']}")).status_code == 200
    assert (await childcare.get(f"Observation/{s.ids['child2-cond']}")).status_code == 404
    assert (await worker.get(f"Observation/{s.ids['child2-cond']}")).status_code == 200
    assert (await worker.get("Patient/child2")).status_code == 200
    assert (await worker.get(f"Observation/{s.ids['child2-growth']}")).status_code == 404
    # A purpose the role may state but the consent does not cover sees nothing.
    reply = await worker.get(f"Observation/{s.ids['child2-cond']}", x_purpose_of_use="COC")
    assert reply.status_code == 404
    # A purpose the role may not state is refused outright.
    assert (await worker.get("Patient/child2", x_purpose_of_use="HRESCH")).status_code == 403


async def test_school_positive_path(world: World) -> None:
    s = await scene.build(world)
    assert _types((await s.school.get("Patient")).json()) == ["Patient"]
    assert (await s.school.get("Patient/child1")).json()["birthDate"] == "2020-01-01"


async def test_researcher_reads_consented_data_but_never_identities(world: World) -> None:
    s = await scene.build(world)
    researcher = await world.caller("study", "Organization/research", "researcher")
    await s.hospital.create(
        scene.consent(
            "child1", agency_types=("research",), purposes=("HRESCH",), classes=("demographics", "growth")
        )
    )
    assert (await researcher.get(f"Observation/{s.ids['child1-growth']}")).status_code == 200
    assert (await researcher.get("Observation?_summary=count")).json()["total"] == 1
    assert (await researcher.get("Patient/child1")).status_code == 403
    assert (await researcher.get("Patient")).status_code == 403
    included = (await researcher.get("Observation?_include=Observation:subject")).json()
    assert _types(included) == ["Observation"]
    assert (await researcher.post("Observation", scene.observation("child1", None, "x"))).status_code == 403


async def test_auditor_reads_audit_events_only(world: World) -> None:
    s = await scene.build(world)
    auditor = await world.caller("audit", "Organization/ops", "auditor")
    assert (await auditor.get("Patient/child1")).status_code == 403
    assert (await auditor.get("Observation")).status_code == 403
    await s.school.get("Patient/child1")
    await s.school.get(f"Observation/{s.ids['child1-growth']}")
    await s.other_school.get("Patient/child1")  # refused, and recorded too
    who = (await auditor.get("AuditEvent?entity=Patient/child1&_count=100")).json()
    clients = [e["resource"]["agent"][0]["who"].get("identifier", {}).get("value") for e in who["entry"]]
    assert clients.count("school") == 2 and clients.count("hospital") >= 4
    assert "school-b" in clients
    refused = [
        e["resource"]
        for e in who["entry"]
        if e["resource"]["agent"][0]["who"].get("identifier", {}).get("value") == "school-b"
    ]
    assert refused[0]["outcome"] == "4"
    assert (await auditor.get("AuditEvent?agent=Organization/school1&_summary=count")).json()["total"] >= 2


async def test_admin_sees_everything(world: World) -> None:
    s = await scene.build(world)
    assert (await s.admin.get("Observation?_summary=count")).json()["total"] == 6
    assert (await s.admin.get("Observation/_history")).status_code == 200
    assert (await s.admin.get(f"Observation/{s.ids['child2-cond']}")).status_code == 200


async def test_emergency_access_needs_a_reason_and_is_flagged(world: World) -> None:
    s = await scene.build(world)
    er = await world.caller("er", "Organization/cc", "health-centre")
    target = f"Observation/{s.ids['child2-cond']}"
    assert (await er.get(target)).status_code == 404
    assert (await er.get(target, x_purpose_of_use="ETREAT")).status_code == 403
    reply = await er.get(target, x_purpose_of_use="ETREAT", x_emergency_reason="unconscious child in ER")
    assert reply.status_code == 200 and reply.headers["x-emergency-access"] == "recorded"
    assert (await s.school.get(target, x_purpose_of_use="ETREAT", x_emergency_reason="x")).status_code == 403
    events = [
        e
        for e in await world.audit_events()
        if e.get("purposeOfUse", [{}])[0].get("coding", [{}])[0].get("code") == "ETREAT"
    ]
    granted = [e for e in events if e["outcome"] == "0"]
    assert len(granted) == 1
    detail = [d for ent in granted[0]["entity"] for d in ent.get("detail", [])]
    assert detail == [{"type": "emergency-reason", "valueString": "unconscious child in ER"}]
    assert {"reference": "Patient/child2"} in [ent.get("what") for ent in granted[0]["entity"]]


async def test_assigned_agency_may_update_a_referral_task(world: World) -> None:
    s = await scene.build(world)
    await s.hospital.create(scene.consent("child1", actors=("Organization/school1",), classes=("referral",)))
    task = await s.hospital.create(
        {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "for": {"reference": "Patient/child1"},
            "owner": {"reference": "Organization/school1"},
        }
    )
    seen = (await s.school.get(f"Task/{task['id']}")).json()
    seen["status"] = "received"
    received = await s.school.put(f"Task/{task['id']}", {k: v for k, v in seen.items() if k != "meta"})
    assert received.status_code == 200, received.text
    assert received.json()["meta"]["tag"][0]["code"] == "Organization/hosp"  # still the hospital's record
    assert (await s.hospital.get(f"Task/{task['id']}")).json()["status"] == "received"
    seen["owner"] = {"reference": "Organization/school2"}
    assert (await s.school.put(f"Task/{task['id']}", seen)).status_code == 403
    assert (await s.other_school.get(f"Task/{task['id']}")).status_code == 404
