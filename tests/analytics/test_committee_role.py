"""The committee role: aggregates only. Any individual record is 403 and audited."""

from __future__ import annotations

from tests.security import scene
from tests.security.conftest import World


async def test_committee_never_gets_a_record(world: World) -> None:
    s = await scene.build(world)
    committee = await world.caller("khet-committee", "Organization/ops", "committee")
    for url in (
        "Patient/child1",
        "Patient?gender=female",
        f"Observation/{s.ids['child1-growth']}",
        "Observation",
        "Consent",
        "AuditEvent",
        "Patient/child1/$everything",
        "ViewDefinition/children/$run",
        "$viewdefinition-run?viewReference=ViewDefinition/children",
    ):
        reply = await committee.get(url)
        assert reply.status_code == 403, (url, reply.status_code, reply.text)
        assert reply.json()["resourceType"] == "OperationOutcome"
    assert (await committee.get("Organization/hosp")).status_code == 200
    assert (
        await committee.post("Organization", {"resourceType": "Organization", "name": "x"})
    ).status_code == 403
    refusals = [
        e
        for e in await world.audit_events()
        if any(a.get("who", {}).get("display") == "khet-committee" for a in e.get("agent", []))
        and e.get("outcome") != "0"
    ]
    assert len(refusals) >= 10


async def test_committee_learns_nothing_about_records_through_agencies(world: World) -> None:
    """Organizations are open to committees, but reverse chains and _revinclude through them reach
    children's records: those answer as if no record existed."""
    s = await scene.build(world)
    committee = await world.caller("khet-committee", "Organization/ops", "committee")
    growth = s.ids["child1-growth"]
    probes = (
        f"Organization?_has:Observation:performer:_id={growth}",
        "Organization?_has:Observation:performer:code=29463-7",
        "Organization?_id=hosp&_revinclude=Observation:performer",
        "Organization?_id=hosp&_revinclude=Patient:organization",
    )
    admin_found = 0
    for url in probes:
        seen = (await s.admin.get(url)).json()
        admin_found += len(seen.get("entry", []))
        reply = await committee.get(url)
        if reply.status_code == 200:
            types = {e["resource"]["resourceType"] for e in reply.json().get("entry", [])}
            assert types <= {"Organization", "OperationOutcome"}, (url, types)
            if "_has" in url:
                assert reply.json().get("entry", []) == [], url
        else:
            assert reply.status_code in (400, 403), (url, reply.text)
    assert admin_found >= 3  # the probes do reach records for a role that may see them
