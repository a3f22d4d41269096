"""Consent decides each section of the summary (auth on): a school under a growth-and-development
consent sees those sections only, the rest are left out with emptyReason withheld; a child the caller
may not see answers like an unknown one; every summary request is audited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from fhir_server.api.app import create_app
from tests.conftest import make_settings
from tests.security.conftest import BASE, World, agency
from tests.security.scene import consent
from tests.summary.support import full_record, load_full_record, sections

SHOWN = {"identity", "growth", "development", "consents"}  # Consent resources are demographics-class
WITHHELD = {"guardians", "birth", "immunization", "referrals", "wellbeing"}


async def _setup(world: World) -> tuple[Any, Any, Any, dict[str, Any]]:
    admin = await world.caller("admin", "Organization/ops", "admin")
    for oid, kind in (("ops", "district-office"), ("school1", "school"), ("school2", "school")):
        assert (await admin.put(f"Organization/{oid}", agency(oid, kind))).status_code in (200, 201)
    child = await load_full_record(world.http, admin.headers())
    reply = await admin.post(
        "Consent",
        consent(
            child["id"], actors=("Organization/school1",), classes=("demographics", "growth", "development")
        ),
    )
    assert reply.status_code == 201, reply.text
    school = await world.caller("school", "Organization/school1", "school")
    other = await world.caller("school-b", "Organization/school2", "school")
    return admin, school, other, child


def _types(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["resourceType"] for e in bundle["entry"]}


async def test_a_school_sees_the_consented_sections_only(world: World) -> None:
    admin, school, _, child = await _setup(world)
    reply = await school.get(f"Patient/{child['id']}/$summary")
    assert reply.status_code == 200, reply.text
    bundle = reply.json()
    found = sections(bundle)
    shown = {
        code
        for code, s in found.items()
        if "emptyReason" not in s or s["emptyReason"]["coding"][0]["code"] != "withheld"
    }
    assert shown == SHOWN
    for code in WITHHELD:
        section = found[code]
        assert section["emptyReason"]["coding"][0] == {
            "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
            "code": "withheld",
        }
        assert "entry" not in section  # never partly filled
        assert "ไม่แสดง" in section["text"]["div"]
    # Nothing of a withheld section travels in the Bundle.
    assert not _types(bundle) & {
        "Immunization",
        "ImmunizationRecommendation",
        "ServiceRequest",
        "Task",
        "RelatedPerson",
    }
    wellbeing_profile = "th-wellbeing"
    assert not [
        e
        for e in bundle["entry"]
        if any(wellbeing_profile in p for p in e["resource"].get("meta", {}).get("profile", []))
    ]
    assert found["growth"].get("entry") and found["development"].get("entry")
    # The admin (unrestricted) sees every section.
    everything = (await admin.get(f"Patient/{child['id']}/$summary")).json()
    assert all(
        s.get("emptyReason", {}).get("coding", [{}])[0].get("code") != "withheld"
        for s in sections(everything).values()
    )
    # The page follows the same decision.
    page = await school.get(f"Patient/{child['id']}/$summary?_format=html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text.count('class="withheld"') == len(WITHHELD)
    assert 'class="growth-chart"' in page.text and 'class="wellbeing-flower"' not in page.text
    # Audited: who asked, about which child, what was shown and withheld.
    events = [
        e
        for e in await world.audit_events()
        if e["subtype"][0]["code"] == "operation"
        and {"what": {"reference": f"Patient/{child['id']}"}}.items() <= e.get("entity", [{}])[0].items()
    ]
    described = [e["outcomeDesc"] for e in events]
    assert (
        "child summary: shown identity, growth, development, consents;"
        " withheld guardians, birth, immunization, referrals, wellbeing"
    ) in described


async def test_a_child_the_caller_may_not_see_is_unknown_and_audited(world: World) -> None:
    admin, _, other, child = await _setup(world)
    hidden = await other.get(f"Patient/{child['id']}/$summary")
    unknown = await other.get("Patient/no-such-child/$summary")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["issue"][0]["code"] == unknown.json()["issue"][0]["code"] == "not-found"
    assert (await admin.delete(f"Patient/{child['id']}")).status_code in (200, 204)
    assert (await admin.get(f"Patient/{child['id']}/$summary")).status_code == 404  # deleted
    failures = [
        e
        for e in await world.audit_events()
        if e["subtype"][0]["code"] == "operation" and e["outcome"] == "4"
    ]
    assert len(failures) >= 3
    assert any(f"Patient/{child['id']}" in str(e.get("entity")) for e in failures)
    # Bad input: $summary takes no parameters.
    reply = await admin.get("Patient/x/$summary?identifier=123")
    assert reply.status_code == 400 and reply.json()["issue"][0]["expression"] == ["identifier"]


async def test_where_configured_a_hidden_child_is_403(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth=True, data_dir=tmp_path / "data", forbidden_status=403)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url=BASE)
    async with app.router.lifespan_context(app), client as http:
        world = World(app, http, tmp_path)
        _, _, other, child = await _setup(world)
        assert (await other.get(f"Patient/{child['id']}/$summary")).status_code == 403
        assert full_record()[2]["id"] == child["id"]
