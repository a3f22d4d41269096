"""Heartbeats over real HTTP (the server's delivery job posting to a loopback receiver): a subscription
with a heartbeat period hears from the server when nothing else was sent to it for that long, with the
number of events so far (so a receiver can tell silence from a lost notification), and gets none while
event notifications keep coming (Backport IG: a heartbeat is sent when no other notification was)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fhir_server.subscriptions import model
from tests.security import scene
from tests.security.conftest import World
from tests.workflow import referral_data as data
from tests.workflow.receiver import Receiver, status_of
from tests.workflow.test_referral_story import subscribe, until

PERIOD = 3  # seconds (the server's floor of 10 s is lowered here to keep the test short)


async def test_heartbeats_fill_silences_only(
    live_world: World, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model, "MIN_HEARTBEAT", 1)
    s = await scene.build(live_world)
    writes = 4 * PERIOD  # one every half second: twice the period
    period = [{"url": model.EXT_HEARTBEAT, "valueUnsignedInt": PERIOD}]
    await subscribe(s.hospital, "ServiceRequest?requester=Organization/hosp", receiver, extension=period)

    def received(kind: str) -> list[dict[str, Any]]:
        return [r for r in list(receiver.received) if r["body"] and status_of(r["body"])["type"] == kind]

    def beats() -> list[dict[str, Any]]:
        return received("heartbeat")

    def all_events() -> list[dict[str, Any]] | None:
        notes = received("event-notification")
        return notes if sum(len(status_of(n["body"])["events"]) for n in notes) == writes else None

    # Nothing happens: a heartbeat after the period, saying no event has happened yet.
    first = await until("a heartbeat while nothing happens", beats, seconds=PERIOD * 4)
    said = status_of(first[0]["body"])
    assert said["status"] == "active" and said["events-since-subscription-start"] == "0"
    assert said["events"] == [] and len(first[0]["body"]["entry"]) == 1  # the status alone
    assert first[0]["headers"]["authorization"] == "Bearer hook-secret"
    assert first[0]["at"] - receiver.received[0]["at"] >= PERIOD - 0.5  # not before the period
    # Referrals keep coming, each well within the period: no heartbeat meanwhile.
    for child in ("child1", "child2") * (writes // 2):
        await s.hospital.create(data.service_request(child, "Organization/hosp", "Organization/school1"))
        await asyncio.sleep(0.5)
    events = await until("every event delivered", all_events)
    flowing = (events[0]["at"], events[-1]["at"])
    assert flowing[1] - flowing[0] >= PERIOD  # events flowed for longer than one period
    assert not [b for b in beats() if flowing[0] <= b["at"] <= flowing[1]]
    # Silence again: the next heartbeat counts every event so far.
    later = await until(
        "a heartbeat after the events",
        lambda: [b for b in beats() if b["at"] > flowing[1]],
        seconds=PERIOD * 4,
    )
    assert later[0]["at"] - flowing[1] >= PERIOD - 0.5
    assert status_of(later[0]["body"])["events-since-subscription-start"] == str(writes)
