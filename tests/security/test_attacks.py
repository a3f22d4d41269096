"""The attack matrix over HTTP: every way to reach a child's data without consent is closed and audited."""

from __future__ import annotations

from typing import Any

import pytest

from tests.security import scene
from tests.security.conftest import World


@pytest.fixture
async def s(world: World) -> scene.Scene:
    return await scene.build(world)


def _ids(bundle: dict[str, Any], mode: str | None = None) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if mode is None or e.get("search", {}).get("mode") == mode
    }


async def _rest_events(world: World, client: str) -> list[dict[str, Any]]:
    return [
        e
        for e in await world.audit_events()
        if e["type"]["code"] == "rest" and e["agent"][0]["who"].get("identifier", {}).get("value") == client
    ]


async def test_consented_agency_sees_exactly_the_permitted_classes(s: scene.Scene) -> None:
    school, ids = s.school, s.ids
    assert (await school.get("Patient/child1")).status_code == 200
    assert (await school.get(f"Observation/{ids['child1-growth']}")).status_code == 200
    assert (await school.get(f"Observation/{ids['child1-dev']}")).status_code == 200
    for hidden in (
        f"Observation/{ids['child1-cond']}",
        "Patient/child2",
        f"Observation/{ids['child2-growth']}",
    ):
        reply = await school.get(hidden)
        assert reply.status_code == 404, hidden
        assert reply.json()["issue"][0]["diagnostics"] == f"{hidden} is not known"
    bundle = (await school.get("Observation?_total=accurate")).json()
    assert bundle["total"] == 2
    assert _ids(bundle) == {f"Observation/{ids['child1-growth']}", f"Observation/{ids['child1-dev']}"}
    assert (await school.get("Observation?_summary=count")).json()["total"] == 2
    assert (await school.get("Patient?_summary=count")).json()["total"] == 1
    # Full pages: with _count=1 the first page holds a visible resource and there is a next page.
    page = (await school.get("Observation?_count=1")).json()
    assert len(page["entry"]) == 1 and any(link["relation"] == "next" for link in page["link"])
    # The writing agency always sees its own data.
    assert (await s.hospital.get("Observation?_summary=count")).json()["total"] == 6


async def test_other_agency_without_consent_sees_nothing(s: scene.Scene) -> None:
    other = s.other_school
    assert (await other.get("Patient/child1")).status_code == 404
    assert (await other.get("Observation?_summary=count")).json()["total"] == 0
    assert (await other.get("Patient")).json().get("entry") is None
    events = await _rest_events(s.world, "school-b")
    read = next(e for e in events if e["subtype"][0]["code"] == "read")
    assert read["outcome"] == "4" and read["purposeOfUse"][0]["coding"][0]["code"] == "COC"
    assert read["agent"][1]["who"]["reference"] == "Organization/school2"


async def test_forbidden_status_can_be_403(s: scene.Scene) -> None:
    s.world.app.state.settings.forbidden_status = 403
    reply = await s.school.get("Patient/child2")
    assert reply.status_code == 403 and reply.json()["issue"][0]["code"] == "forbidden"


async def test_no_leak_through_include_and_revinclude(s: scene.Scene) -> None:
    school, ids = s.school, s.ids
    own = await scene.earlier_note(s.world, "Organization/school1", "child2", "school note about child2")
    bundle = (await school.get("Observation?_include=Observation:subject")).json()
    assert "Patient/child2" not in _ids(bundle)
    assert "Patient/child1" in _ids(bundle, "include")
    assert f"Observation/{own['id']}" in _ids(bundle, "match")
    rev = (await school.get("Patient?_revinclude=Observation:subject")).json()
    assert _ids(rev, "match") == {"Patient/child1"}
    assert _ids(rev, "include") == {
        f"Observation/{ids['child1-growth']}",
        f"Observation/{ids['child1-dev']}",
    }
    iterate = (
        await school.get(
            "Observation?_include=Observation:subject&_revinclude:iterate=Observation:subject"
            f"&_id={own['id']}"
        )
    ).json()
    assert _ids(iterate) == {f"Observation/{own['id']}"}


async def test_no_leak_through_chaining_and_has(s: scene.Scene) -> None:
    school, ids = s.school, s.ids
    own = await scene.earlier_note(s.world, "Organization/school1", "child2", "school note")
    assert f"Observation/{own['id']}" in _ids((await school.get("Observation?subject=Patient/child2")).json())
    # Chaining into child2 would reveal child2's gender: the chain's target must be visible too.
    chained = (await school.get("Observation?subject.gender=female")).json()
    assert f"Observation/{own['id']}" not in _ids(chained)
    assert len(_ids(chained)) == 2
    # _has would reveal that child1 has a (hidden) health-condition Observation.
    hidden = (await school.get(f"Patient?_has:Observation:subject:_id={ids['child1-cond']}")).json()
    assert hidden.get("entry") is None
    shown = (await school.get(f"Patient?_has:Observation:subject:_id={ids['child1-growth']}")).json()
    assert _ids(shown) == {"Patient/child1"}


async def test_no_leak_through_history_and_vread(s: scene.Scene) -> None:
    school, ids = s.school, s.ids
    cond = f"Observation/{ids['child1-cond']}"
    assert (await school.get(f"{cond}/_history")).status_code == 404
    assert (await school.get(f"{cond}/_history/1")).status_code == 404
    assert (await school.get("Patient/child2/_history")).status_code == 404
    assert (await school.get("Observation/_history")).status_code == 403
    assert (await school.get("_history")).status_code == 403
    history = (await school.get("Patient/child1/_history")).json()
    assert len(history["entry"]) == 1
    assert (await school.get(f"Observation/{ids['child1-growth']}/_history/1")).status_code == 200
    events = await _rest_events(s.world, "school")
    assert sum(1 for e in events if e["outcome"] == "4") == 5


async def test_no_leak_through_bundle_entries(s: scene.Scene) -> None:
    school, ids = s.school, s.ids
    for kind in ("batch", "transaction"):
        bundle = {
            "resourceType": "Bundle",
            "type": kind,
            "entry": [
                {"request": {"method": "GET", "url": f"Observation/{ids['child1-cond']}"}},
                {"request": {"method": "GET", "url": "Observation?_total=accurate"}},
                {"request": {"method": "GET", "url": "Patient/child2/_history"}},
            ],
        }
        reply = await school.post("", bundle)
        if kind == "transaction":
            assert reply.status_code == 404
            continue
        entries = reply.json()["entry"]
        assert entries[0]["response"]["status"].startswith("404")
        assert entries[1]["resource"]["total"] == 2
        assert entries[2]["response"]["status"].startswith("404")


async def test_no_leak_through_compartment_and_operations(s: scene.Scene) -> None:
    school, ids = s.school, s.ids
    everything = (await school.get("Patient/child1/*")).json()
    assert _ids(everything) == {
        "Patient/child1",
        f"Observation/{ids['child1-growth']}",
        f"Observation/{ids['child1-dev']}",
        f"Consent/{ids['consent']}",  # the consent itself is demographics-class data
    }
    assert (await school.get("Patient/child2/Observation")).json().get("entry") is None
    assert (await school.get(f"Observation/{ids['child1-cond']}/$validate?mode=delete")).status_code == 404
    assert (await school.get(f"Observation/{ids['child1-growth']}/$validate?mode=delete")).status_code == 200
    assert (await school.post("$reindex", {"resourceType": "Parameters"})).status_code == 403


async def test_withdrawal_applies_at_once(s: scene.Scene) -> None:
    school, hospital, ids = s.school, s.hospital, s.ids
    growth = f"Observation/{ids['child1-growth']}"
    assert (await school.get(growth)).status_code == 200
    current = (await hospital.get(f"Consent/{ids['consent']}")).json()
    current["status"] = "inactive"
    assert (await hospital.put(f"Consent/{ids['consent']}", current)).status_code == 200
    assert (await school.get(growth)).status_code == 404
    assert (await school.get("Observation?_summary=count")).json()["total"] == 0
    assert (await school.get("Patient/child1")).status_code == 404


async def test_deny_provision_wins(s: scene.Scene) -> None:
    school, hospital, ids = s.school, s.hospital, s.ids
    await hospital.create(
        scene.consent("child1", kind="deny", agency_types=("school",), purposes=(), classes=("development",))
    )
    assert (await school.get(f"Observation/{ids['child1-growth']}")).status_code == 200
    assert (await school.get(f"Observation/{ids['child1-dev']}")).status_code == 404
    assert (await school.get("Observation?_summary=count")).json()["total"] == 1


async def test_no_writing_on_behalf_of_another_agency(s: scene.Scene) -> None:
    school, ids = s.school, s.ids
    from fhir_server.security.access import OWNER_TAG_SYSTEM

    forged = scene.observation("child1", None, "forged")
    forged["meta"] = {"tag": [{"system": OWNER_TAG_SYSTEM, "code": "Organization/hosp"}]}
    reply = await school.post("Observation", forged)
    assert reply.status_code == 403 and "another agency" in reply.json()["issue"][0]["diagnostics"]
    # Changing what another agency wrote (visible through consent) is refused; hidden ones stay hidden.
    patient = (await school.get("Patient/child1")).json()
    patient["gender"] = "male"
    assert (await school.put("Patient/child1", patient)).status_code == 403
    assert (await school.delete(f"Observation/{ids['child1-growth']}")).status_code == 403
    # A hidden resource answers exactly as one that does not exist (and nothing is deleted).
    hidden = await school.delete(f"Observation/{ids['child1-cond']}")
    unknown = await school.delete("Observation/nothing-here")
    assert hidden.status_code == unknown.status_code == 204
    body = {"resourceType": "Patient", "id": "child2", "gender": "male"}
    assert (await school.put("Patient/child2", body)).status_code == 405
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": scene.observation("child1", None, "ok"),
                "request": {"method": "POST", "url": "Observation"},
            },
            {"resource": forged, "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    assert (await school.post("", transaction)).status_code == 403
    assert (await s.hospital.get("Patient/child1")).json()["gender"] == "female"
    own = (await school.get("Observation?_summary=count")).json()["total"]
    assert own == 2  # nothing of the rejected transaction was stored
    assert (await s.hospital.get(f"Observation/{ids['child1-cond']}")).status_code == 200
    events = await _rest_events(s.world, "school")
    assert [e["outcome"] for e in events if e["action"] in ("C", "U", "D")] == ["4"] * 4 + ["0", "4"]


async def test_own_writes_are_tagged_and_stay_visible(s: scene.Scene) -> None:
    from fhir_server.security.access import OWNER_TAG_SYSTEM

    note = await s.school.create(scene.observation("child1", None, "school note"))
    assert {"system": OWNER_TAG_SYSTEM, "code": "Organization/school1"} in note["meta"]["tag"]
    stored = (await s.school.get(f"Observation/{note['id']}")).json()
    assert stored == note
    assert {"system": OWNER_TAG_SYSTEM, "code": "Organization/school1"} in stored["meta"]["tag"]
    stored["status"] = "amended"
    assert (await s.school.put(f"Observation/{note['id']}", stored)).status_code == 200
    assert (await s.other_school.get(f"Observation/{note['id']}")).status_code == 404
    assert (await s.hospital.get(f"Observation/{note['id']}")).status_code == 404


async def test_scope_too_narrow(world: World) -> None:
    s = await scene.build(world)
    narrow = await world.caller("narrow", "Organization/hosp", "hospital", "system/Patient.rs")
    assert (await narrow.get("Patient/child1")).status_code == 200
    assert (await narrow.get("Observation")).status_code == 403
    assert (await narrow.get(f"Observation/{s.ids['child1-growth']}")).status_code == 403
    assert (await narrow.post("Patient", {"resourceType": "Patient"})).status_code == 403
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"Observation/{s.ids['child1-growth']}"}}],
    }
    assert (await narrow.post("", batch)).status_code == 403
    # A system search is narrowed to the types the token may search.
    system = (await narrow.get("?_type=Patient,Observation")).json()
    assert {e["resource"]["resourceType"] for e in system["entry"]} == {"Patient"}
    events = await _rest_events(world, "narrow")
    assert [e["outcome"] for e in events] == ["0", "4", "4", "4", "4", "0"]


async def test_audit_events_cannot_be_changed(s: scene.Scene) -> None:
    events = (await s.admin.get("AuditEvent?_count=1")).json()
    event = events["entry"][0]["resource"]
    assert (await s.admin.put(f"AuditEvent/{event['id']}", event)).status_code == 403
    assert (await s.admin.delete(f"AuditEvent/{event['id']}")).status_code == 403
    assert (await s.admin.post("AuditEvent", {**event, "id": None})).status_code == 403
    assert (await s.hospital.get(f"AuditEvent/{event['id']}")).status_code == 403
