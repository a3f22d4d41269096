"""The referral lifecycle over HTTP with auth on: the status graph, who may move a Task, what each
status needs, the ServiceRequest kept in step, and who did what in the history and the audit."""

from __future__ import annotations

from typing import Any

from fhir_server import canonical
from tests.security import scene
from tests.security.conftest import Caller, World
from tests.workflow import referral_data as data

CHANGED_BY = canonical.tag_system(canonical.TAG_CHANGED_BY)


async def _referral(s: scene.Scene, **task_extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The hospital refers child1 to school1; a guardian's consent lets the school see the referral."""
    await s.hospital.create(scene.consent("child1", actors=("Organization/school1",), classes=("referral",)))
    request = await s.hospital.create(
        data.service_request("child1", "Organization/hosp", "Organization/school1", category="education")
    )
    task = await s.hospital.create(
        data.task("child1", request["id"], "Organization/hosp", "Organization/school1", **task_extra)
    )
    return request, task


async def _move(caller: Caller, task: dict[str, Any], status: str, **changes: Any) -> Any:
    current = (await caller.get(f"Task/{task['id']}")).json()
    return await caller.put(f"Task/{task['id']}", data.moved(current, status, **changes))


def _changed_by(resource: dict[str, Any]) -> str | None:
    return next((t["code"] for t in resource["meta"].get("tag", []) if t["system"] == CHANGED_BY), None)


async def test_the_owner_moves_the_referral_and_the_request_follows(world: World) -> None:
    s = await scene.build(world)
    request, task = await _referral(s)
    for status in ("received", "accepted", "in-progress"):
        reply = await _move(s.school, task, status)
        assert reply.status_code == 200, reply.text
    # Completing needs an output saying what was done.
    no_output = await _move(s.school, task, "completed")
    assert no_output.status_code == 422, no_output.text
    assert no_output.json()["issue"][0]["expression"] == ["Task.output"], no_output.text
    assert (await s.school.get(f"Task/{task['id']}")).json()["status"] == "in-progress"
    output = [{"type": {"text": "enrolment"}, "valueString": "Enrolled in grade 1 on 2026-11-25"}]
    ended = {"start": "2026-11-21", "end": "2026-11-25"}
    done = await _move(s.school, task, "completed", output=output, executionPeriod=ended)
    assert done.status_code == 200, done.text
    # The requester's ServiceRequest is closed by the server, naming the school and the Task.
    closed = (await s.hospital.get(f"ServiceRequest/{request['id']}")).json()
    assert closed["status"] == "completed" and closed["meta"]["versionId"] == "2"
    assert _changed_by(closed) == "Organization/school1"
    # Off the graph: a completed referral does not go back (409), nothing changes.
    back = await _move(s.school, task, "in-progress")
    assert back.status_code == 409 and back.json()["issue"][0]["expression"] == ["Task.status"]
    assert "completed" in back.json()["issue"][0]["diagnostics"]
    stored = (await s.hospital.get(f"Task/{task['id']}")).json()
    assert stored["status"] == "completed" and stored["meta"]["versionId"] == "5"
    # The history shows each transition and who made it.
    history = (await s.hospital.get(f"Task/{task['id']}/_history")).json()
    steps = [(e["resource"]["status"], _changed_by(e["resource"])) for e in reversed(history["entry"])]
    assert steps == [
        ("requested", "Organization/hosp"),
        ("received", "Organization/school1"),
        ("accepted", "Organization/school1"),
        ("in-progress", "Organization/school1"),
        ("completed", "Organization/school1"),
    ]
    # Each transition is audited with what changed.
    notes = [e.get("outcomeDesc", "") for e in await world.audit_events()]
    assert any(f"Task/{task['id']}: received -> accepted" in n for n in notes)
    assert any(f"ServiceRequest/{request['id']}: active -> completed" in n for n in notes)


async def test_wrong_party_missing_reason_and_cancellation(world: World) -> None:
    s = await scene.build(world)
    request, task = await _referral(s)
    # Only the assigned agency receives; only the requester cancels.
    by_requester = await _move(s.hospital, task, "received")
    assert by_requester.status_code == 403 and "Organization/school1" in by_requester.text
    assert (await _move(s.school, task, "received")).status_code == 200
    by_owner = await _move(s.school, task, "cancelled")
    assert by_owner.status_code == 403 and "requesting agency" in by_owner.text
    # Rejecting needs a reason.
    no_reason = await _move(s.school, task, "rejected")
    assert no_reason.status_code == 422 and no_reason.json()["issue"][0]["expression"] == [
        "Task.statusReason"
    ]
    assert (await s.hospital.get(f"Task/{task['id']}")).json()["status"] == "received"
    cancelled = await _move(s.hospital, task, "cancelled", statusReason={"text": "family moved away"})
    assert cancelled.status_code == 200, cancelled.text
    revoked = (await s.hospital.get(f"ServiceRequest/{request['id']}")).json()
    assert revoked["status"] == "revoked" and _changed_by(revoked) == "Organization/hosp"


async def test_on_hold_resumes_where_it_stopped(world: World) -> None:
    s = await scene.build(world)
    _, task = await _referral(s)
    for status in ("received", "accepted", "in-progress", "on-hold"):
        assert (await _move(s.school, task, status)).status_code == 200
    wrong = await _move(s.school, task, "accepted")
    assert wrong.status_code == 409 and "resumes as in-progress" in wrong.text
    assert (await _move(s.school, task, "in-progress")).status_code == 200


async def test_a_new_referral_starts_as_sent(world: World) -> None:
    s = await scene.build(world)
    request = await s.hospital.create(
        data.service_request("child1", "Organization/hosp", "Organization/school1")
    )
    reply = await s.hospital.post(
        "Task",
        data.task("child1", request["id"], "Organization/hosp", "Organization/school1", status="completed"),
    )
    assert reply.status_code == 422 and reply.json()["issue"][0]["expression"] == ["Task.status"]


async def test_due_date_from_the_service_levels(world: World) -> None:
    s = await scene.build(world)
    request = await s.hospital.create(
        data.service_request("child1", "Organization/hosp", "Organization/school1", priority="urgent")
    )
    task = await s.hospital.create(
        data.task("child1", request["id"], "Organization/hosp", "Organization/school1")
    )
    # development + urgent: 14 days from authoredOn (service-levels.json).
    assert task["restriction"]["period"]["end"] == "2026-12-04T09:00:00+07:00"
    given = await s.hospital.create(
        data.task(
            "child1",
            request["id"],
            "Organization/hosp",
            "Organization/school1",
            restriction={"period": {"end": "2026-12-01"}},
        )
    )
    assert given["restriction"]["period"]["end"] == "2026-12-01"  # the requester's own date is kept
    found = (await s.hospital.get("Task?due-date=lt2026-12-02&_count=10")).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [given["id"]]
