"""The referral story end to end, over HTTP with auth on and the server's own delivery job running:
a childcare centre refers a child whose DSPM screening suggests a delay to its health centre, which
refers on to the hospital; the hospital accepts, sees the child and completes with an output; the
health centre closes the childcare centre's referral with the hospital's finding; every requester's
ServiceRequest is closed by the server, and the childcare centre and the health centre learn of each
step through rest-hook receivers of their own (no polling)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from fhir_server.subscriptions import model
from tests.security import scene
from tests.security.conftest import BASE, Caller, World, agency
from tests.workflow import referral_data as data
from tests.workflow.receiver import Receiver, status_of


async def until(what: str, check: Callable[[], Any], seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {seconds} s: {what}")


async def subscribe(caller: Caller, criteria: str, hook: Receiver, **channel: Any) -> str:
    """A full-resource rest-hook subscription to ``hook``, once the server made it active."""
    sub = await caller.create(
        {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "what happens to our referrals",
            "criteria": criteria,
            "channel": {
                "type": "rest-hook",
                "endpoint": hook.url(),
                "payload": "application/fhir+json",
                "_payload": {"extension": [{"url": model.EXT_PAYLOAD_CONTENT, "valueCode": "full-resource"}]},
                "header": ["Authorization: Bearer hook-secret"],
                **channel,
            },
        }
    )

    async def active() -> bool:
        return bool((await caller.get(f"Subscription/{sub['id']}")).json()["status"] == "active")

    await until("the handshake makes the subscription active", active)
    assert len(hook.notifications("handshake")) == 1
    return str(sub["id"])


def heard_events(hook: Receiver) -> list[tuple[int, dict[str, Any]]]:
    """(event number, focus resource) of every event the receiver was told about, in order."""
    out = []
    for note in hook.notifications("event-notification"):
        numbers = [int(e["event-number"]) for e in status_of(note)["events"]]
        resources = [entry.get("resource") for entry in note["entry"][1:]]
        out.extend(zip(numbers, resources, strict=True))
    return out


async def _move(caller: Caller, kind: str, rid: str, status: str, **changes: Any) -> dict[str, Any]:
    current = (await caller.get(f"{kind}/{rid}")).json()
    reply = await caller.put(f"{kind}/{rid}", data.moved(current, status, **changes))
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


async def test_childcare_to_health_centre_to_hospital_and_back(live_world: World) -> None:
    world = live_world
    s = await scene.build(world)
    await world.set_agency("Organization/hc", "health-centre")
    assert (await s.admin.put("Organization/hc", agency("hc", "health-centre"))).status_code in (200, 201)
    childcare = await world.caller("cc-app", "Organization/cc", "childcare")
    health_centre = await world.caller("hc-app", "Organization/hc", "health-centre")
    hospital = s.hospital
    cc_hook, hc_hook = Receiver(), Receiver()
    try:
        # The childcare centre registers the child, records the guardian's consent to share the
        # referral and the screening with the health centre and the hospital, and screens her.
        child = await childcare.create(
            {
                "resourceType": "Patient",
                "gender": "female",
                "birthDate": "2024-05-02",
                "name": [{"family": "Dek"}],
            }
        )
        cid = child["id"]
        classes = ("demographics", "development", "referral")
        actors = ("Organization/hc", "Organization/hosp")
        await childcare.create(scene.consent(cid, actors=actors, classes=classes, purposes=("COC", "TREAT")))
        screening = scene.observation(cid, scene.DEVELOPMENT, "DSPM")
        screening["performer"] = [{"reference": "Organization/cc"}]
        screening = await childcare.create(screening)
        # Both agencies subscribe: the childcare centre to its requests, the health centre to its inbox.
        await subscribe(childcare, "ServiceRequest?requester=Organization/cc", cc_hook)
        await subscribe(health_centre, "Task?owner=Organization/hc", hc_hook)

        # 1. The childcare centre refers the child to the health centre.
        first = data.service_request(cid, "Organization/cc", "Organization/hc")
        first["supportingInfo"] = [{"reference": f"Observation/{screening['id']}"}]
        first = await childcare.create(first)
        first_task = await childcare.create(data.task(cid, first["id"], "Organization/cc", "Organization/hc"))
        assert first_task["restriction"]["period"]["end"]  # a due date from the service levels

        # 2. The health centre hears of it in its inbox (no polling), receives and accepts it.
        await until("the health centre is told of the referral", lambda: heard_events(hc_hook))
        number, told = heard_events(hc_hook)[0]
        assert number == 1 and told["id"] == first_task["id"] and told["status"] == "requested"
        for status in ("received", "accepted", "in-progress"):
            await _move(health_centre, "Task", first_task["id"], status)

        # 3. It refers the child on to the hospital, as part of the childcare centre's referral.
        onward = data.service_request(cid, "Organization/hc", "Organization/hosp", priority="urgent")
        onward["basedOn"] = [{"reference": f"ServiceRequest/{first['id']}"}]
        onward = await health_centre.create(onward)
        onward_task = data.task(cid, onward["id"], "Organization/hc", "Organization/hosp")
        onward_task["partOf"] = [{"reference": f"Task/{first_task['id']}"}]
        onward_task = await health_centre.create(onward_task)

        # 4. The hospital finds it in its inbox, accepts, sees the child and completes with an output.
        inbox = (await hospital.get("Task?owner=Organization/hosp&status=requested")).json()
        assert [e["resource"]["id"] for e in inbox.get("entry", [])] == [onward_task["id"]]
        for status in ("received", "accepted", "in-progress"):
            await _move(hospital, "Task", onward_task["id"], status)
        visit = await hospital.create(
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": f"Patient/{cid}"},
                "serviceProvider": {"reference": "Organization/hosp"},
            }
        )
        output = [
            {"type": {"text": "assessment"}, "valueReference": {"reference": f"Encounter/{visit['id']}"}}
        ]
        ended = {"start": "2026-11-24", "end": "2026-11-26"}
        await _move(hospital, "Task", onward_task["id"], "completed", output=output, executionPeriod=ended)
        closed_onward = (await health_centre.get(f"ServiceRequest/{onward['id']}")).json()
        assert closed_onward["status"] == "completed"  # the health centre's own request, closed

        # 5. The health centre closes the childcare centre's referral with the hospital's finding.
        await _move(
            health_centre, "Task", first_task["id"], "completed", output=output, executionPeriod=ended
        )
        closed = (await childcare.get(f"ServiceRequest/{first['id']}")).json()
        assert closed["status"] == "completed"

        # 6. The childcare centre was told, through its own receiver, with the same numbers throughout.
        async def told_closed() -> list[tuple[int, dict[str, Any]]]:
            heard = heard_events(cc_hook)
            return heard if heard and heard[-1][1]["status"] == "completed" else []

        heard = await until("the childcare centre is told its referral closed", told_closed)
        assert [n for n, _ in heard] == list(range(1, len(heard) + 1))  # no gap, none twice
        assert {r["id"] for _, r in heard} == {first["id"]}  # only its own request
        assert [r["status"] for _, r in heard] == ["active", "completed"]
        last = cc_hook.notifications("event-notification")[-1]
        assert status_of(last)["events"][-1]["focus"]["reference"] == f"{BASE}/ServiceRequest/{first['id']}"
        assert all(r["headers"]["authorization"] == "Bearer hook-secret" for r in cc_hook.received)
        # The health centre heard its inbox Task move through every status it wrote, in order.
        await until("the health centre hears its Task completed", lambda: len(heard_events(hc_hook)) >= 5)
        assert [(n, r["status"]) for n, r in heard_events(hc_hook)] == [
            (1, "requested"),
            (2, "received"),
            (3, "accepted"),
            (4, "in-progress"),
            (5, "completed"),
        ]
    finally:
        cc_hook.close()
        hc_hook.close()
