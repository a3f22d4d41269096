"""A referral that passes its due date is announced to its requester once (a Communication), and the
requester's subscription hears of it; the agency it was sent to, or any other, sees no more than before."""

from __future__ import annotations

from fhir_server import canonical
from fhir_server.search import registry
from fhir_server.workflow.overdue import sweep
from tests.security import scene
from tests.security.conftest import BASE, World
from tests.workflow import referral_data as data
from tests.workflow.receiver import Receiver, status_of
from tests.workflow.test_subscriptions import deliver, subscription


async def test_an_overdue_referral_notifies_its_requester(notify_world: World, receiver: Receiver) -> None:
    s = await scene.build(notify_world)
    sub = await s.hospital.create(
        subscription("Communication?recipient=Organization/hosp", receiver.url(), "full-resource")
    )
    await deliver(notify_world)
    late_request = await s.hospital.create(
        data.service_request("child1", "Organization/hosp", "Organization/school1", authored="2020-01-01")
    )
    late = await s.hospital.create(
        data.task(
            "child1", late_request["id"], "Organization/hosp", "Organization/school1", authored="2020-01-01"
        )
    )
    request = await s.hospital.create(
        data.service_request("child1", "Organization/hosp", "Organization/school1")
    )
    await s.hospital.create(
        data.task("child1", request["id"], "Organization/hosp", "Organization/school1", authored="2099-01-01")
    )
    written = await sweep(notify_world.store)
    assert len(written) == 1
    assert await sweep(notify_world.store) == []  # the same due date is announced once
    notice = (await s.hospital.get(written[0])).json()
    assert notice["about"] == [{"reference": f"Task/{late['id']}"}]
    assert notice["recipient"] == [{"reference": "Organization/hosp"}]
    assert notice["sender"] == {"reference": "Organization/school1"}
    assert notice["subject"] == {"reference": "Patient/child1"}
    assert notice["category"][0]["coding"][0]["code"] == "overdue-notice"
    assert notice["identifier"][0]["system"] == canonical.OVERDUE_NOTICE_SYSTEM
    found = (await s.hospital.get("Communication?category=overdue-notice")).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [notice["id"]]
    # Another agency neither reads it nor finds it.
    assert (await s.other_school.get(written[0])).status_code == 404
    assert (await s.other_school.get("Communication")).json().get("entry", []) == []
    # The requester's rest-hook receiver is told, with the notice itself.
    await deliver(notify_world)
    events = receiver.notifications("event-notification")
    assert len(events) == 1 and status_of(events[0])["events"][0]["event-number"] == "1"
    assert status_of(events[0])["events"][0]["focus"]["reference"] == f"{BASE}/{written[0]}"
    assert events[0]["entry"][1]["resource"]["about"] == [{"reference": f"Task/{late['id']}"}]
    assert status_of(events[0])["subscription"]["reference"].endswith(sub["id"])
    assert await sweep(notify_world.store) == []  # nothing new has passed its date


async def test_the_sweep_waits_quietly_while_due_date_is_being_reindexed(notify_world: World) -> None:
    s = await scene.build(notify_world)
    request = await s.hospital.create(
        data.service_request("child1", "Organization/hosp", "Organization/school1", authored="2020-01-01")
    )
    await s.hospital.create(
        data.task("child1", request["id"], "Organization/hosp", "Organization/school1", authored="2020-01-01")
    )
    param = registry.get("Task", "due-date")
    assert param is not None
    registry._pending.add(param.url)  # as after an upgrade that ships the parameter to a store with Tasks
    try:
        assert await sweep(notify_world.store) == []  # no error: it tries again next turn
        assert (await s.hospital.get("Task?overdue=true")).status_code == 400  # a client is told why
    finally:
        registry.mark_reindexed(param.url)
    assert len(await sweep(notify_world.store)) == 1
