"""Patient/$everything under auth: consent decides inside the query, hidden children stay hidden, audited."""

from __future__ import annotations

from typing import Any

import pytest

from tests.security import scene
from tests.security.conftest import World


@pytest.fixture
async def s(world: World) -> scene.Scene:
    return await scene.build(world)


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") == "match"
    }


def _whats(event: dict[str, Any]) -> set[str]:
    return {x["what"]["reference"] for x in event.get("entity", []) if "what" in x}


async def _events(world: World, client: str) -> list[dict[str, Any]]:
    return [
        e
        for e in await world.audit_events()
        if e["subtype"][0]["code"] == "operation"
        and e["agent"][0]["who"].get("identifier", {}).get("value") == client
    ]


async def _golden(s: scene.Scene, child: str) -> str:
    """The child's golden record (fhir_server.identity), linked to its source record."""
    tag = "https://termtem.org/fhir/tag/identity|golden"
    reply = await s.admin.get(f"Patient?link=Patient/{child}&_tag={tag}")
    return f"Patient/{reply.json()['entry'][0]['resource']['id']}"


async def test_agency_without_consent_gets_nothing_and_is_audited(s: scene.Scene) -> None:
    for child in ("child1", "child2"):
        reply = await s.other_school.get(f"Patient/{child}/$everything")
        assert reply.status_code == 404, reply.text
        assert reply.json()["issue"][0]["diagnostics"] == f"Patient/{child} is not known"
        assert "Observation" not in reply.text
    # Same answer as for a child that does not exist: existence is not revealed.
    assert (await s.other_school.get("Patient/nobody/$everything")).status_code == 404
    events = await _events(s.world, "school-b")
    assert len(events) == 3
    denied = next(e for e in events if "Patient/child1" in _whats(e))
    assert _whats(denied) == {"Patient/child1"}  # nothing of the child's data was touched
    assert denied["outcome"] == "4"
    assert denied["agent"][1]["who"]["reference"] == "Organization/school2"


async def test_consented_agency_gets_exactly_the_permitted_classes(s: scene.Scene) -> None:
    ids = s.ids
    reply = await s.school.get("Patient/child1/$everything")
    assert reply.status_code == 200, reply.text
    permitted = {
        "Patient/child1",
        f"Observation/{ids['child1-growth']}",
        f"Observation/{ids['child1-dev']}",
        f"Consent/{ids['consent']}",  # the consent itself is demographics, which it shares
        await _golden(s, "child1"),  # the child's merged identity (fhir_server.identity): demographics
    }
    assert _ids(reply.json()) == permitted  # never the diagnosis (health-condition), never child2
    # Full pages under consent: walking _count=1 pages yields exactly the permitted set.
    url: str | None = "Patient/child1/$everything?_count=1"
    walked: list[str] = []
    while url:
        page = (await s.school.get(url)).json()
        assert len(_ids(page)) == 1
        walked.extend(_ids(page))
        url = next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), None)
    assert sorted(walked) == sorted(permitted)
    # The consent does not name child2 for this school.
    assert (await s.school.get("Patient/child2/$everything")).status_code == 404
    # The writing agency sees everything it wrote, the diagnosis included.
    own = (await s.hospital.get("Patient/child1/$everything")).json()
    assert _ids(own) == permitted | {f"Observation/{ids['child1-cond']}"}
    # Audited: who, which child, and the resources returned.
    events = [e for e in await _events(s.world, "school") if e["outcome"] == "0"]
    assert events, "the $everything call was not audited"
    whats = _whats(events[0])
    assert "Patient/child1" in whats
    assert f"Observation/{ids['child1-growth']}" in whats
    assert f"Observation/{ids['child1-cond']}" not in whats
    assert events[0]["agent"][1]["who"]["reference"] == "Organization/school1"
    assert events[0]["purposeOfUse"][0]["coding"][0]["code"] == "COC"


async def test_withdrawn_consent_closes_everything_at_once(s: scene.Scene) -> None:
    assert (await s.school.get("Patient/child1/$everything")).status_code == 200
    consent = (await s.hospital.get(f"Consent/{s.ids['consent']}")).json()
    consent["status"] = "inactive"
    reply = await s.hospital.put(f"Consent/{s.ids['consent']}", consent)
    assert reply.status_code == 200, reply.text
    assert (await s.school.get("Patient/child1/$everything")).status_code == 404
