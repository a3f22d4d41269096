"""A volunteer's request for help (อพม. Smart) over HTTP with auth on: validated, routed by subdistrict to
the responsible office, a case and a triage task opened in the same transaction, due by urgency."""

from __future__ import annotations

from typing import Any

from fhir_server import canonical
from fhir_server.workflow import help_requests
from tests.security.conftest import Caller, World, agency
from tests.workflow.referral_data import moved

MSDHS = canonical.MSDHS_AGENCY_SYSTEM
PROBLEM = canonical.code_system(canonical.CS_HELP_PROBLEM)
URGENCY = canonical.code_system(canonical.CS_HELP_URGENCY)
AREA = canonical.code_system(canonical.CS_ADMIN_AREA)


def _answer(link: str, *values: dict[str, Any]) -> dict[str, Any]:
    return {"linkId": link, "answer": list(values)}


def request_for_help(subdistrict: str | None = "103301", urgency: str = "emergency") -> dict[str, Any]:
    """A transaction: the child, the mother who answers, and the completed response."""
    location = [_answer("location.address", {"valueString": "ชุมชนริมทางรถไฟ"})]
    if subdistrict:
        location.insert(
            0, _answer("location.subdistrict", {"valueCoding": {"system": AREA, "code": subdistrict}})
        )
    response = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": help_requests.QUESTIONNAIRE_URL,
        "status": "completed",
        "subject": {"reference": "urn:uuid:child"},
        "source": {"reference": "urn:uuid:mother"},
        "authored": "2026-11-29T09:30:00+07:00",
        "item": [
            _answer(
                "problem",
                {"valueCoding": {"system": PROBLEM, "code": "violence"}},
                {"valueCoding": {"system": PROBLEM, "code": "poverty"}},
            ),
            _answer("child-safe", {"valueBoolean": False}),
            _answer("urgency", {"valueCoding": {"system": URGENCY, "code": urgency}}),
            {"linkId": "location", "item": location},
            _answer("consent-to-share", {"valueBoolean": True}),
        ],
    }
    child = {
        "resourceType": "Patient",
        "gender": "female",
        "birthDate": "2019-03-03",
        "name": [{"text": "ด.ญ.เมย์"}],
    }
    mother = {
        "resourceType": "RelatedPerson",
        "patient": {"reference": "urn:uuid:child"},
        "relationship": [{"coding": [{"system": canonical.V3_ROLE_CODE_SYSTEM, "code": "MTH"}]}],
    }
    entries = []
    for name, resource in (("child", child), ("mother", mother), ("response", response)):
        entries.append(
            {
                "fullUrl": f"urn:uuid:{name}",
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def _agencies(world: World) -> tuple[Caller, Caller, Caller]:
    admin = await world.caller("admin", "Organization/ops", "admin")
    for oid, kind, identifiers in (
        ("vol", "volunteer", ()),
        ("shs1033", "social-welfare", (f"{MSDHS}|BKK-SHS-1033",)),
        ("shs1001", "social-welfare", (f"{MSDHS}|BKK-SHS-1001",)),
    ):
        await world.set_agency(f"Organization/{oid}", kind, *identifiers)
        assert (await admin.put(f"Organization/{oid}", agency(oid, kind))).status_code in (200, 201)
    volunteer = await world.caller("volunteer-app", "Organization/vol", "social-worker")
    office = await world.caller("khlongtoei-app", "Organization/shs1033", "social-worker")
    other = await world.caller("phranakhon-app", "Organization/shs1001", "social-worker")
    return volunteer, office, other


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [
        e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"
    ]


async def test_a_request_for_help_is_routed_by_subdistrict(world: World) -> None:
    volunteer, office, other = await _agencies(world)
    reply = await volunteer.post("", request_for_help())
    assert reply.status_code == 200, reply.text
    response_id = next(
        e["response"]["location"].split("/")[1]
        for e in reply.json()["entry"]
        if e["response"]["location"].startswith("QuestionnaireResponse/")
    )
    # The office of Khlong Toei (subdistrict 103301) finds the triage task in its inbox.
    inbox = (await office.get("Task?owner=Organization/shs1033&status=requested")).json()
    assert len(_ids(inbox)) == 1
    task = inbox["entry"][0]["resource"]
    assert task["code"]["coding"][0]["code"] == "triage" and task["priority"] == "stat"
    assert task["owner"]["reference"] == "Organization/shs1033"
    assert task["owner"]["identifier"]["value"] == "BKK-SHS-1033"
    assert task["requester"] == {"reference": "Organization/vol"}
    assert task["focus"] == {"reference": f"QuestionnaireResponse/{response_id}"}
    # Emergency: triaged within 24 hours (service-levels.json, category triage, priority stat).
    from datetime import datetime, timedelta

    authored = datetime.fromisoformat(task["authoredOn"].replace("Z", "+00:00"))
    due = datetime.fromisoformat(task["restriction"]["period"]["end"].replace("Z", "+00:00"))
    assert due - authored == timedelta(hours=24)
    # The case is open, managed by the office; the family's consent lets the office read the request.
    cases = (
        await volunteer.get(f"EpisodeOfCare?identifier={canonical.HELP_REQUEST_SYSTEM}|{response_id}")
    ).json()
    assert len(_ids(cases)) == 1
    case = cases["entry"][0]["resource"]
    assert case["managingOrganization"]["reference"] == "Organization/shs1033"
    assert case["type"][0]["coding"][0]["code"] == "help-case"
    assert (await office.get(f"QuestionnaireResponse/{response_id}")).status_code == 200
    assert (await office.get(case["patient"]["reference"])).status_code == 200
    # Another district's office neither sees it nor hears of it.
    assert _ids((await other.get("Task?code=triage")).json()) == []
    assert (await other.get(f"QuestionnaireResponse/{response_id}")).status_code == 404
    # The office works on it as the assigned agency.
    current = (await office.get(f"Task/{task['id']}")).json()
    reply = await office.put(f"Task/{task['id']}", moved(current, "received"))
    assert reply.status_code == 200, reply.text
    # Saving the response again opens nothing more.
    stored = (await volunteer.get(f"QuestionnaireResponse/{response_id}")).json()
    again = await volunteer.put(f"QuestionnaireResponse/{response_id}", {**stored, "language": "th"})
    assert again.status_code == 200, again.text
    assert len(_ids((await volunteer.get("EpisodeOfCare")).json())) == 1


async def test_routing_follows_the_table_and_refuses_what_it_cannot_route(world: World) -> None:
    volunteer, _, _ = await _agencies(world)
    # Chiang Mai (50): the provincial office, named by its code (not registered here: identifier only).
    reply = await volunteer.post("", request_for_help("500101", urgency="routine"))
    assert reply.status_code == 200, reply.text
    task = (await volunteer.get("Task?code=triage")).json()["entry"][0]["resource"]
    assert task["owner"] == {
        "identifier": {"system": MSDHS, "value": "MSDHS-PSO-50"},
        "display": "สำนักงานพัฒนาสังคมและความมั่นคงของมนุษย์จังหวัดเชียงใหม่",
    }
    assert task["priority"] == "routine"
    # No subdistrict: refused naming the item, and nothing of the transaction is stored.
    before = len(_ids((await volunteer.get("Patient")).json()))
    refused = await volunteer.post("", request_for_help(None))
    assert refused.status_code == 422, refused.text
    assert "location.subdistrict" in refused.text
    assert len(_ids((await volunteer.get("Patient")).json())) == before
