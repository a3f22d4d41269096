"""$match and the data steward's operations over HTTP with auth on."""

from __future__ import annotations

from typing import Any

import pytest

from tests.identity.helpers import CID, GOLDEN_TAG, child, link_states, tags
from tests.security.conftest import Caller, World

KITTI = "1103700123458"
OTHER = "1103700123466"
MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"


@pytest.fixture
async def people(world: World) -> dict[str, Any]:
    callers = {
        "admin": await world.caller("admin", "Organization/ops", "admin"),
        "steward": await world.caller("steward-app", "Organization/ops", "steward"),
        "childcare": await world.caller("cc-app", "Organization/cc", "childcare"),
        "health": await world.caller("hc-app", "Organization/hc", "health-centre"),
        "school": await world.caller("school-app", "Organization/school1", "school"),
    }
    ids = {
        # The childcare centre has no CID for the child; the health centre has it: not linked, queued.
        "cc": (await callers["childcare"].create(child(None, prefix="เด็กชาย")))["id"],
        "hc": (await callers["health"].create(child(KITTI)))["id"],
        # A different child (another CID) with the same name and birth date.
        "other": (await callers["health"].create(child(OTHER)))["id"],
    }
    return {**callers, "ids": ids}


async def _golden_of(admin: Caller, source: str) -> dict[str, Any]:
    reply = await admin.get(f"Patient?link=Patient/{source}&_tag={GOLDEN_TAG}")
    (entry,) = reply.json()["entry"]
    return entry["resource"]


def _params(**values: Any) -> dict[str, Any]:
    out = []
    for name, value in values.items():
        if isinstance(value, dict):
            out.append({"name": name, "resource": value})
        elif isinstance(value, bool):
            out.append({"name": name, "valueBoolean": value})
        elif isinstance(value, int):
            out.append({"name": name, "valueInteger": value})
        else:
            out.append({"name": name, "valueReference": {"reference": value}})
    return {"resourceType": "Parameters", "parameter": out}


async def test_match_grades_candidates_and_shows_only_what_the_caller_may_see(people: dict[str, Any]) -> None:
    steward, ids = people["steward"], people["ids"]
    query = child(None, given="กิตติ", prefix="ด.ช.", birth="2564-03-15")  # Buddhist-era year
    reply = await steward.post("Patient/$match", _params(resource=query))
    assert reply.status_code == 200, reply.text
    bundle = reply.json()
    assert bundle["type"] == "searchset"
    grades = {
        e["resource"]["id"]: (e["search"]["extension"][0]["valueCode"], e["search"]["score"])
        for e in bundle["entry"]
    }
    assert all(e["search"]["extension"][0]["url"] == MATCH_GRADE for e in bundle["entry"])
    assert {g for g, _ in grades.values()} == {"probable"}
    assert len(grades) == 3  # three children could be him; none is certain without an identifier
    certain = await steward.post("Patient/$match", _params(resource=child(KITTI), onlyCertainMatches=True))
    (entry,) = certain.json()["entry"]
    assert entry["search"]["extension"][0]["valueCode"] == "certain" and entry["search"]["score"] == 1
    assert entry["resource"]["id"] == (await _golden_of(people["admin"], ids["hc"]))["id"]
    # A school serving none of these children learns nothing.
    blind = await people["school"].post("Patient/$match", _params(resource=child(KITTI)))
    assert blind.status_code == 200 and "entry" not in blind.json()


async def test_match_bad_input(people: dict[str, Any]) -> None:
    steward = people["steward"]
    empty = await steward.post("Patient/$match", _params(count=3))
    assert empty.status_code == 400 and "needs a Patient" in empty.text
    nothing = await steward.post(
        "Patient/$match", _params(resource={"resourceType": "Patient", "gender": "male"})
    )
    assert nothing.status_code == 400 and "nothing to match on" in nothing.text
    wrong = await steward.post("Patient/$match", _params(resource={"resourceType": "Observation"}))
    assert wrong.status_code == 400
    too_many = await steward.post("Patient/$match", _params(resource=child(KITTI), count=1000))
    assert too_many.status_code == 400
    assert (await steward.get("Patient/$match")).status_code == 405


async def test_review_queue_link_and_merge_rules(people: dict[str, Any], world: World) -> None:
    steward, admin, ids = people["steward"], people["admin"], people["ids"]
    reply = await steward.post("Patient/$identity-links", _params())
    assert reply.status_code == 200, reply.text
    items = [p for p in reply.json().get("parameter", []) if p["name"] == "candidate"]
    cc_golden = (await _golden_of(admin, ids["cc"]))["id"]
    hc_golden = (await _golden_of(admin, ids["hc"]))["id"]
    other_golden = (await _golden_of(admin, ids["other"]))["id"]
    pairs = {
        frozenset(p["valueReference"]["reference"].split("/")[1] for p in item["part"][:2]) for item in items
    }
    assert frozenset({cc_golden, hc_golden}) in pairs

    # Different valid CIDs are never merged: 409, nothing changed.
    before = await _golden_of(admin, ids["hc"])
    clash = await steward.post(
        "Patient/$identity-merge",
        _params(**{"from": f"Patient/{other_golden}", "into": f"Patient/{hc_golden}"}),
    )
    assert clash.status_code == 409, clash.text
    assert "different valid CIDs" in clash.text and KITTI in clash.text and OTHER in clash.text
    assert (await _golden_of(admin, ids["hc"]))["meta"]["versionId"] == before["meta"]["versionId"]

    # Merge the childcare child into the health centre's: both records now one child.
    merged = await steward.post(
        "Patient/$identity-merge", _params(**{"from": f"Patient/{cc_golden}", "into": f"Patient/{hc_golden}"})
    )
    assert merged.status_code == 200, merged.text
    survivor = await _golden_of(admin, ids["cc"])
    assert survivor["id"] == hc_golden
    states = link_states(survivor)
    assert set(states) == {ids["cc"], ids["hc"]}
    assert states[ids["cc"]]["method"] == "manual" and states[ids["cc"]]["by"] == "steward-app"
    retired = (await admin.get(f"Patient/{cc_golden}")).json()
    assert retired["active"] is False and f"{GOLDEN_TAG.split('|')[0]}|retired" in tags(retired)
    assert retired["link"] == [{"other": {"reference": f"Patient/{hc_golden}"}, "type": "replaced-by"}]
    # Both source records are still there, untouched.
    assert (await people["childcare"].get(f"Patient/{ids['cc']}")).json()["meta"]["versionId"] == "1"

    # Undo: the childcare record goes back to its own golden record, now marked not-match.
    undone = await steward.post("Patient/$identity-unmerge", _params(golden=f"Patient/{cc_golden}"))
    assert undone.status_code == 200, undone.text
    back = await _golden_of(admin, ids["cc"])
    assert back["id"] == cc_golden and back["active"] is True
    assert set(link_states(back)) == {ids["cc"]}
    assert set(link_states(await _golden_of(admin, ids["hc"]))) == {ids["hc"]}

    # Link by hand, then unlink: the record becomes a child of its own and is not linked back.
    linked = await steward.post(
        "Patient/$identity-link", _params(source=f"Patient/{ids['cc']}", target=f"Patient/{hc_golden}")
    )
    assert linked.status_code == 200, linked.text
    assert set(link_states(await _golden_of(admin, ids["hc"]))) == {ids["cc"], ids["hc"]}
    split = await steward.post("Patient/$identity-unlink", _params(source=f"Patient/{ids['cc']}"))
    assert split.status_code == 200, split.text
    alone = await _golden_of(admin, ids["cc"])
    assert set(link_states(alone)) == {ids["cc"]} and alone["id"] != hc_golden
    # The childcare centre later learns the CID: the steward's "not the same" still holds.
    record = (await people["childcare"].get(f"Patient/{ids['cc']}")).json()
    record["identifier"] = [{"system": CID, "value": KITTI}]
    assert (await people["childcare"].put(f"Patient/{ids['cc']}", record)).status_code == 200
    assert (await _golden_of(admin, ids["cc"]))["id"] == alone["id"]


async def test_non_stewards_are_refused_and_audited(people: dict[str, Any], world: World) -> None:
    ids = people["ids"]
    for caller in (people["health"], people["school"]):
        reply = await caller.post("Patient/$identity-unlink", _params(source=f"Patient/{ids['hc']}"))
        assert reply.status_code == 403, reply.text
        assert "steward role" in reply.text
    refused = [
        e
        for e in await world.audit_events()
        if e["subtype"][0]["code"] == "operation"
        and e["outcome"] == "4"
        and e["agent"][0]["who"].get("identifier", {}).get("value") in ("hc-app", "school-app")
    ]
    assert len(refused) == 2 and all("steward role" in e["outcomeDesc"] for e in refused)
