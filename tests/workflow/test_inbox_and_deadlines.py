"""Inboxes, outboxes, overdue referrals per agency and per district, and agencies named by identifier."""

from __future__ import annotations

from typing import Any

from fhir_server import canonical
from tests.security import scene
from tests.security.conftest import World
from tests.workflow import referral_data as data

HCODE = canonical.HCODE_SYSTEM
AREA = canonical.code_system(canonical.CS_ADMIN_AREA)


def _ids(bundle: dict[str, Any]) -> list[str]:
    return sorted(e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match")


def _address(district: str, subdistrict: str) -> dict[str, Any]:
    part = [
        {"url": "province", "valueCoding": {"system": AREA, "code": district[:2]}},
        {"url": "district", "valueCoding": {"system": AREA, "code": district}},
        {"url": "subdistrict", "valueCoding": {"system": AREA, "code": subdistrict}},
    ]
    url = canonical.structure_definition(canonical.EXT_DOPA_ADDRESS_CODE)
    return {"extension": [{"url": url, "extension": part}], "country": "TH"}


async def test_overdue_per_agency_and_district(world: World) -> None:
    s = await scene.build(world)
    await s.hospital.create(
        scene.consent(
            "child1", actors=("Organization/school1", "Organization/school2"), classes=("referral",)
        )
    )
    # Child 3 lives in Khlong Toei (1033), child 1 has no address.
    child3 = await s.hospital.create(
        {
            "resourceType": "Patient",
            "gender": "male",
            "birthDate": "2021-02-02",
            "address": [_address("1033", "103301")],
        }
    )
    await s.hospital.create(
        scene.consent(child3["id"], actors=("Organization/school1",), classes=("referral",))
    )
    ids: dict[str, str] = {}
    for name, child, owner, authored in (
        ("late", "child1", "Organization/school1", "2020-01-01T08:00:00+07:00"),
        ("late-other", "child1", "Organization/school2", "2020-01-01T08:00:00+07:00"),
        ("late-khlong-toei", child3["id"], "Organization/school1", "2020-01-01T08:00:00+07:00"),
        ("in-time", "child1", "Organization/school1", "2099-01-01T08:00:00+07:00"),
    ):
        request = await s.hospital.create(
            data.service_request(child, "Organization/hosp", owner, authored=authored)
        )
        task = await s.hospital.create(
            data.task(child, request["id"], "Organization/hosp", owner, authored=authored)
        )
        ids[name] = task["id"]
    # A late referral that was completed is no longer overdue.
    request = await s.hospital.create(
        data.service_request("child1", "Organization/hosp", "Organization/school1")
    )
    done = await s.hospital.create(
        data.task("child1", request["id"], "Organization/hosp", "Organization/school1", authored="2020-01-01")
    )
    for status, extra in (
        ("received", {}),
        ("accepted", {}),
        ("in-progress", {}),
        (
            "completed",
            {
                "output": [{"type": {"text": "visit"}, "valueString": "done"}],
                "executionPeriod": {"end": "2020-01-20"},
            },
        ),
    ):
        current = (await s.school.get(f"Task/{done['id']}")).json()
        assert (
            await s.school.put(f"Task/{done['id']}", data.moved(current, status, **extra))
        ).status_code == 200

    outbox = (await s.hospital.get("Task?requester=Organization/hosp&overdue=true&_count=50")).json()
    assert _ids(outbox) == sorted([ids["late"], ids["late-other"], ids["late-khlong-toei"]])
    inbox = (await s.school.get("Task?owner=Organization/school1&overdue=true")).json()
    assert _ids(inbox) == sorted([ids["late"], ids["late-khlong-toei"]])
    district = (await s.hospital.get("Task?overdue=true&patient.district=1033")).json()
    assert _ids(district) == [ids["late-khlong-toei"]]
    in_time = (await s.school.get("Task?owner=Organization/school1&overdue=false")).json()
    assert _ids(in_time) == sorted([ids["in-time"], done["id"]])
    open_inbox = (await s.school.get("Task?owner=Organization/school1&status=requested")).json()
    assert _ids(open_inbox) == sorted([ids["late"], ids["late-khlong-toei"], ids["in-time"]])
    bad = await s.school.get("Task?overdue=maybe")
    assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["overdue"]


async def test_agencies_named_by_identifier_resolve_through_the_registry(world: World) -> None:
    s = await scene.build(world)
    await world.set_agency("Organization/school1", "school", f"{HCODE}|11111")
    await s.hospital.create(scene.consent("child1", actors=("Organization/school1",), classes=("referral",)))
    by_code = {"identifier": {"system": HCODE, "value": "11111"}, "display": "the school"}
    request = await s.hospital.create(data.service_request("child1", "Organization/hosp", by_code))
    task = await s.hospital.create(data.task("child1", request["id"], "Organization/hosp", by_code))
    assert task["owner"] == {"reference": "Organization/school1", **by_code}
    assert request["performer"] == [{"reference": "Organization/school1", **by_code}]
    inbox = (await s.school.get("Task?owner=Organization/school1")).json()
    assert _ids(inbox) == [task["id"]]
    current = (await s.school.get(f"Task/{task['id']}")).json()
    assert (await s.school.put(f"Task/{task['id']}", data.moved(current, "received"))).status_code == 200
    # An identifier nobody registered stays as it was sent; so does one two agencies share.
    unknown = {"identifier": {"system": HCODE, "value": "99999"}}
    other = await s.hospital.create(data.task("child1", request["id"], "Organization/hosp", unknown))
    assert other["owner"] == unknown
    # An Organization resource claiming the code decides nothing (anyone can write one).
    await s.other_school.create(
        {"resourceType": "Organization", "identifier": [{"system": HCODE, "value": "99999"}], "name": "x"}
    )
    again = await s.hospital.create(data.task("child1", request["id"], "Organization/hosp", unknown))
    assert again["owner"] == unknown
