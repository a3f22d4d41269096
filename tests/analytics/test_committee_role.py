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
