"""R4 Subscriptions over HTTP with auth on: bad input, events recorded with their writes, delivery to a
real loopback receiver in the Backport shape, payloads by visibility, back-off to error, $status/$events."""

from __future__ import annotations

import time
from typing import Any

from fhir_server.subscriptions import model
from fhir_server.subscriptions.dispatcher import Dispatcher
from tests.security import scene
from tests.security.conftest import BASE, Caller, World
from tests.workflow import referral_data as data
from tests.workflow.receiver import Receiver, status_of


def subscription(
    criteria: str, endpoint: str, content: str = "full-resource", **channel: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "referrals of our agency",
        "criteria": criteria,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": model.EXT_PAYLOAD_CONTENT, "valueCode": content}]},
            **channel,
        },
    }


async def deliver(world: World) -> Dispatcher:
    """One pass of the delivery job, waiting for its deliveries (the job runs this in a loop; here
    without the pause between part-filled notifications, so one pass sends everything pending)."""
    dispatcher = Dispatcher(world.store, world.app.state.settings, BASE, spacing=0)
    await dispatcher.step(await world.store.outbox_since(0))
    await dispatcher.settle()
    return dispatcher


async def _status(caller: Caller, sid: str) -> str:
    return str((await caller.get(f"Subscription/{sid}")).json()["status"])


async def test_bad_subscriptions_are_refused_naming_the_element(
    notify_world: World, receiver: Receiver
) -> None:
    s = await scene.build(notify_world)
    good = subscription("Task?owner=Organization/hosp", receiver.url())
    cases = [
        ({**good, "criteria": "Task?owner=Organization/hosp&nonsense=1"}, "Subscription.criteria"),
        ({**good, "criteria": "Nothing?x=1"}, "Subscription.criteria"),
        ({**good, "criteria": "Task?overdue=true"}, "Subscription.criteria"),
        # A chain would be matched without the agency's restrictions: it could learn a hidden child's name.
        ({**good, "criteria": "Task?patient.name=Somchai"}, "Subscription.criteria"),
        ({**good, "criteria": "Patient?_has:Observation:patient:code=x"}, "Subscription.criteria"),
        ({**good, "channel": {**good["channel"], "type": "email"}}, "Subscription.channel.type"),
        (
            {**good, "channel": {**good["channel"], "endpoint": "http://example.org/hook"}},
            "Subscription.channel.endpoint",
        ),
        (
            {**good, "channel": {**good["channel"], "endpoint": "https://10.1.2.3/hook"}},
            "Subscription.channel.endpoint",
        ),
        (
            {**good, "channel": {**good["channel"], "endpoint": "https://169.254.169.254/"}},
            "Subscription.channel.endpoint",
        ),
        # IPv6 forms that reach a private IPv4 host: 6to4, NAT64, IPv4-compatible.
        *(
            ({**good, "channel": {**good["channel"], "endpoint": f"https://[{a}]/hook"}},
             "Subscription.channel.endpoint")
            for a in ("2002:a00:1::1", "64:ff9b::a9fe:a9fe", "::a00:1", "64:ff9b:1::808:808")
        ),
        (
            {**good, "channel": {**good["channel"], "header": ["Host: evil"]}},
            "Subscription.channel.header[0]",
        ),
    ]
    for body, where in cases:
        reply = await s.hospital.post("Subscription", body)
        assert reply.status_code == 422, (where, reply.text)
        assert reply.json()["issue"][0]["expression"] == [where], reply.text
    assert (await s.hospital.get("Subscription")).json().get("total", 0) == 0  # nothing was stored
    # A client asks; the server decides when it is active.
    created = await s.hospital.create({**good, "status": "active"})
    assert created["status"] == "requested"


async def test_a_loopback_endpoint_needs_the_configuration(world: World, receiver: Receiver) -> None:
    s = await scene.build(world)  # default settings: loopback endpoints are not allowed
    reply = await s.hospital.post(
        "Subscription", subscription("Task?owner=Organization/hosp", receiver.url())
    )
    assert reply.status_code == 422 and "loopback" in reply.text


async def test_events_are_delivered_in_the_backport_shape(notify_world: World, receiver: Receiver) -> None:
    s = await scene.build(notify_world)
    sub = await s.hospital.create(
        subscription(
            "ServiceRequest?requester=Organization/hosp",
            receiver.url(),
            header=["Authorization: Bearer receiver-secret"],
        )
    )
    await deliver(notify_world)
    handshake = receiver.notifications("handshake")
    assert len(handshake) == 1 and status_of(handshake[0])["subscription"]["reference"].endswith(sub["id"])
    assert await _status(s.hospital, sub["id"]) == "active"
    request = await s.hospital.create(
        data.service_request("child1", "Organization/hosp", "Organization/school1")
    )
    await s.hospital.create(data.service_request("child2", "Organization/hosp", "Organization/school1"))
    await deliver(notify_world)
    # Both pending events in one notification (no max count given: the server's cap), in order.
    events = receiver.notifications("event-notification")
    assert len(events) == 1
    first = events[0]
    assert [e["event-number"] for e in status_of(first)["events"]] == ["1", "2"]
    assert status_of(first)["events-since-subscription-start"] == "2"
    assert first["type"] == "history" and first["entry"][0]["resource"]["resourceType"] == "Parameters"
    assert status_of(first)["events"][0]["focus"]["reference"] == f"{BASE}/ServiceRequest/{request['id']}"
    assert first["entry"][1]["resource"]["id"] == request["id"]  # full resource: the hospital's own
    assert len(first["entry"]) == 3
    headers = [r["headers"] for r in receiver.received]
    assert all(h["authorization"] == "Bearer receiver-secret" for h in headers)
    assert all(h["content-type"] == "application/fhir+json" for h in headers)
    # Nothing is sent twice once acknowledged.
    await deliver(notify_world)
    assert len(receiver.notifications("event-notification")) == 1


async def test_pending_events_share_a_notification_up_to_the_max_count(
    notify_world: World, receiver: Receiver
) -> None:
    s = await scene.build(notify_world)
    max_count = [{"url": model.EXT_MAX_COUNT, "valueInteger": 2}]
    await s.hospital.create(
        subscription(
            "ServiceRequest?requester=Organization/hosp", receiver.url(), "id-only", extension=max_count
        )
    )
    await deliver(notify_world)
    for child in ("child1", "child2", "child1", "child2", "child1"):
        await s.hospital.create(data.service_request(child, "Organization/hosp", "Organization/school1"))
    await deliver(notify_world)
    notes = receiver.notifications("event-notification")
    assert [[e["event-number"] for e in status_of(n)["events"]] for n in notes] == [
        ["1", "2"],
        ["3", "4"],
        ["5"],
    ]
    assert {status_of(n)["events-since-subscription-start"] for n in notes} == {"5"}
    assert [len(n["entry"]) for n in notes] == [3, 3, 2]  # the status, then one entry per focus


async def test_what_an_agency_hears_follows_what_it_may_see(notify_world: World, receiver: Receiver) -> None:
    s = await scene.build(notify_world)
    sub = await s.school.create(subscription("Task?status=requested", receiver.url()))
    await deliver(notify_world)
    request = await s.hospital.create(
        data.service_request("child1", "Organization/hosp", "Organization/school1")
    )
    # Assigned to the school, no consent yet: it hears of it, but only the id.
    assigned = await s.hospital.create(
        data.task("child1", request["id"], "Organization/hosp", "Organization/school1")
    )
    # Assigned elsewhere and hidden from it: it hears nothing at all.
    await s.hospital.create(data.task("child1", request["id"], "Organization/hosp", "Organization/school2"))
    await deliver(notify_world)
    events = receiver.notifications("event-notification")
    assert len(events) == 1
    assert status_of(events[0])["events"][0]["focus"]["reference"] == f"{BASE}/Task/{assigned['id']}"
    assert "resource" not in events[0]["entry"][1]
    # With the guardian's consent the school sees referrals about child1: full resources from now on.
    await s.hospital.create(scene.consent("child1", actors=("Organization/school1",), classes=("referral",)))
    again = await s.hospital.create(
        data.task("child1", request["id"], "Organization/hosp", "Organization/school1")
    )
    await deliver(notify_world)
    last = receiver.notifications("event-notification")[-1]
    assert last["entry"][1]["resource"]["id"] == again["id"]
    assert status_of(last)["events"][0]["event-number"] == "2"
    # $events names only what it may see too; another agency cannot ask about the subscription at all.
    replay = (await s.school.get(f"Subscription/{sub['id']}/$events?eventsSinceNumber=1")).json()
    assert [e["event-number"] for e in status_of(replay)["events"]] == ["1", "2"]
    assert status_of(replay)["type"] == "query-event"
    assert (await s.other_school.get(f"Subscription/{sub['id']}/$status")).status_code == 404


async def test_a_failing_endpoint_backs_off_then_errors_and_events_stay(
    notify_world: World, receiver: Receiver
) -> None:
    s = await scene.build(notify_world)
    sub = await s.hospital.create(
        subscription("ServiceRequest?requester=Organization/hosp", receiver.url(), "id-only")
    )
    await deliver(notify_world)
    receiver.status = 500
    await s.hospital.create(data.service_request("child1", "Organization/hosp", "Organization/school1"))
    dispatcher = await deliver(notify_world)
    state = dispatcher.states[sub["id"]]
    assert state.attempts == 1 and state.delivered == 0 and state.next_attempt > time.time()
    assert "HTTP 500" in (state.last_error or "")
    assert await _status(s.hospital, sub["id"]) == "active"  # still within the retry window
    # The retry window runs out: the subscription goes to error, the event stays retrievable.
    notify_world.app.state.settings.subscription_retry_seconds = 0
    state.next_attempt = 0
    await dispatcher.flush()
    await dispatcher.step([])
    await dispatcher.settle()
    stored = (await s.hospital.get(f"Subscription/{sub['id']}")).json()
    assert stored["status"] == "error" and "HTTP 500" in stored["error"]
    status = status_of((await s.hospital.get(f"Subscription/{sub['id']}/$status")).json())
    assert status["status"] == "error" and status["events-since-subscription-start"] == "1"
    replay = (await s.hospital.get(f"Subscription/{sub['id']}/$events")).json()
    assert [e["event-number"] for e in status_of(replay)["events"]] == ["1"]
    # Re-requested, it resumes where it stopped: the undelivered event arrives with its number.
    receiver.status = 200
    await s.hospital.put(f"Subscription/{sub['id']}", {**stored, "status": "requested"})
    await deliver(notify_world)
    await deliver(notify_world)
    numbers = [
        status_of(n)["events"][0]["event-number"] for n in receiver.notifications("event-notification")
    ]
    assert numbers[-1] == "1" and await _status(s.hospital, sub["id"]) == "active"


async def test_a_fault_inside_the_server_backs_off_and_delivers_later(
    notify_world: World, receiver: Receiver, monkeypatch: Any
) -> None:
    from fhir_server.subscriptions import notifications

    s = await scene.build(notify_world)
    sub = await s.hospital.create(
        subscription("ServiceRequest?requester=Organization/hosp", receiver.url(), "id-only")
    )
    await deliver(notify_world)
    await s.hospital.create(data.service_request("child1", "Organization/hosp", "Organization/school1"))
    real = notifications.bundle

    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(notifications, "bundle", broken)
    dispatcher = await deliver(notify_world)
    state = dispatcher.states[sub["id"]]
    assert state.attempts == 1 and state.next_attempt > time.time()  # not tried again at once
    assert "RuntimeError" in (state.last_error or "")
    await dispatcher.step([])
    await dispatcher.settle()
    assert dispatcher.states[sub["id"]].attempts == 1 and not receiver.notifications("event-notification")
    monkeypatch.setattr(notifications, "bundle", real)
    state.next_attempt = 0
    await dispatcher.step([])
    await dispatcher.settle()
    (note,) = receiver.notifications("event-notification")
    assert status_of(note)["events"][0]["event-number"] == "1"
