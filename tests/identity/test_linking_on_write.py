"""Automatic linking on writes (auth on): one golden child per national identifier, whoever wrote first."""

from __future__ import annotations

from typing import Any

import pytest

from tests.identity.helpers import CID, GOLDEN_TAG, child, link_states, sources_of, tags
from tests.security.conftest import Caller, World

KITTI = "1103700123458"


async def _goldens(admin: Caller, **params: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    reply = await admin.get(f"Patient?_tag={GOLDEN_TAG}&{query}")
    assert reply.status_code == 200, reply.text
    return [e["resource"] for e in reply.json().get("entry", [])]


@pytest.fixture
async def agencies(world: World) -> dict[str, Caller]:
    return {
        "admin": await world.caller("admin", "Organization/ops", "admin"),
        "childcare": await world.caller("cc-app", "Organization/cc", "childcare"),
        "health": await world.caller("hc-app", "Organization/hc", "health-centre"),
        "hospital": await world.caller("hosp-app", "Organization/hosp", "hospital"),
    }


async def test_one_cid_from_three_agencies_is_one_child(agencies: dict[str, Caller], world: World) -> None:
    made = (await agencies["childcare"].create(child(KITTI)))["id"]
    reply = await agencies["health"].put(f"Patient?identifier={CID}|{KITTI}", child(KITTI, prefix="เด็กชาย"))
    assert reply.status_code == 201, reply.text
    health = reply.json()["id"]
    reply = await agencies["hospital"].post(
        "Patient", child(KITTI, birth="2564-03-15"), If_None_Exist=f"identifier={CID}|{KITTI}"
    )
    assert reply.status_code == 201, reply.text  # its own source record, not another agency's
    hospital = reply.json()["id"]
    assert len({made, health, hospital}) == 3

    (golden,) = await _goldens(agencies["admin"], identifier=f"{CID}|{KITTI}")
    assert tags(golden) >= {GOLDEN_TAG}
    states = link_states(golden)
    assert set(states) == {made, health, hospital}
    assert all(s["assurance"] == "certain" and s["method"] == "automatic" for s in states.values())
    assert states[health]["rule"] == "cid" and states[hospital]["rule"] == "cid"
    assert states[made]["rule"] == "new-record" and states[made]["by"] == "termtem"
    # Element provenance: the CID came from all three; the Buddhist-era date was brought to 2021.
    (identifier,) = golden["identifier"]
    assert identifier["value"] == KITTI
    assert sources_of(identifier) == {f"Patient/{s}" for s in (made, health, hospital)}
    assert golden["birthDate"] == "2021-03-15"
    assert sources_of(golden["_birthDate"]) == {f"Patient/{s}" for s in (made, health, hospital)}
    # The hospital's write is audited with the golden record it changed.
    events = [
        e
        for e in await world.audit_events()
        if e["agent"][0]["who"].get("identifier", {}).get("value") == "hosp-app" and e["action"] == "C"
    ]
    assert any(f"Patient/{golden['id']}" in {x["what"]["reference"] for x in e["entity"]} for e in events)


async def test_reimport_by_one_agency_stays_one_record(agencies: dict[str, Caller]) -> None:
    await agencies["childcare"].create(child(KITTI))
    url = f"Patient?identifier={CID}|{KITTI}"
    first = await agencies["health"].put(url, child(KITTI))
    again = await agencies["health"].put(url, child(KITTI, given="กิตติ์"))
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert first.json()["id"] == again.json()["id"]
    (golden,) = await _goldens(agencies["admin"], identifier=f"{CID}|{KITTI}")
    assert len(link_states(golden)) == 2
    # Both spellings survive in the golden record, each naming its source.
    assert {n["given"][0] for n in golden["name"]} == {"กิตติ", "กิตติ์"}


async def test_searches_show_golden_records_only_when_asked(agencies: dict[str, Caller]) -> None:
    await agencies["childcare"].create(child(KITTI))
    admin = agencies["admin"]
    plain = (await admin.get(f"Patient?identifier={CID}|{KITTI}")).json()
    assert plain["total"] if "total" in plain else len(plain["entry"]) == 1
    assert "_tag%3Anot" in plain["link"][0]["url"]  # the exclusion is visible in the self link
    asked = (await admin.get(f"Patient?identifier={CID}|{KITTI}&_tag={GOLDEN_TAG}")).json()
    assert len(asked["entry"]) == 1 and tags(asked["entry"][0]["resource"]) >= {GOLDEN_TAG}


async def test_golden_records_are_server_managed(agencies: dict[str, Caller]) -> None:
    await agencies["childcare"].create(child(KITTI))
    admin = agencies["admin"]
    (golden,) = await _goldens(admin, identifier=f"{CID}|{KITTI}")
    checked = (await admin.post("Patient/$validate", golden)).json()  # valid R4, with our extensions
    assert [i for i in checked["issue"] if i["severity"] in ("error", "fatal")] == [], checked
    reply = await admin.put(f"Patient/{golden['id']}", {**golden, "gender": "female"})
    assert reply.status_code == 409 and "golden record" in reply.text, reply.text
    reply = await admin.delete(f"Patient/{golden['id']}")
    assert reply.status_code == 409
    forged = child("3101700000017") | {
        "meta": {"tag": [{"system": GOLDEN_TAG.split("|")[0], "code": "golden"}]}
    }
    reply = await agencies["hospital"].post("Patient", forged)
    assert reply.status_code == 422 and "set by the server only" in reply.text
    (after,) = await _goldens(admin, identifier=f"{CID}|{KITTI}")
    assert after["meta"]["versionId"] == golden["meta"]["versionId"]


async def test_transaction_with_two_patients_of_one_cid_fails_naming_both(
    agencies: dict[str, Caller],
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:1",
                "resource": child(KITTI),
                "request": {"method": "POST", "url": "Patient"},
            },
            {"request": {"method": "POST", "url": "Observation"}, "resource": _note("urn:uuid:1")},
            {
                "fullUrl": "urn:uuid:2",
                "resource": child(KITTI, given="กิตติพงษ์"),
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    reply = await agencies["hospital"].post("", bundle)
    assert reply.status_code == 409, reply.text
    issue = reply.json()["issue"][0]
    assert "Bundle.entry[0]" in issue["diagnostics"] and "Bundle.entry[2]" in issue["diagnostics"]
    assert KITTI in issue["diagnostics"] and issue["code"] == "duplicate"
    assert issue["expression"] == [
        "Bundle.entry[0].resource.identifier",
        "Bundle.entry[2].resource.identifier",
    ]
    assert await _goldens(agencies["admin"], identifier=f"{CID}|{KITTI}") == []  # nothing was written
    listed = (await agencies["admin"].get(f"Patient?identifier={CID}|{KITTI}")).json()
    assert "entry" not in listed


def _note(subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "note"},
        "subject": {"reference": subject},
    }


async def test_duplicates_within_an_agency_are_named_when_a_conditional_write_runs(
    agencies: dict[str, Caller],
) -> None:
    hospital = agencies["hospital"]
    first = (await hospital.create(child(KITTI)))["id"]
    second = (await hospital.create(child(KITTI)))["id"]  # a plain POST always creates; still one child
    (golden,) = await _goldens(agencies["admin"], identifier=f"{CID}|{KITTI}")
    assert set(link_states(golden)) == {first, second}
    reply = await hospital.put(f"Patient?identifier={CID}|{KITTI}", child(KITTI))
    assert reply.status_code == 412, reply.text
    text = reply.json()["issue"][0]["diagnostics"]
    for needed in (KITTI, f"Patient/{first}", f"Patient/{second}", f"Patient/{golden['id']}", "กิตติ"):
        assert needed in text, (needed, text)
    # Another agency's conditional write is not disturbed by the hospital's duplicates.
    reply = await agencies["health"].put(f"Patient?identifier={CID}|{KITTI}", child(KITTI))
    assert reply.status_code == 201, reply.text


async def test_different_valid_cids_are_never_linked(agencies: dict[str, Caller]) -> None:
    await agencies["childcare"].create(child(KITTI))
    await agencies["hospital"].create(child("1103700123466"))  # same name and birth date: a twin?
    goldens = await _goldens(agencies["admin"], birthdate="2021-03-15")
    assert len(goldens) == 2
    assert all(len(link_states(g)) == 1 for g in goldens)
    assert all(
        "extension" not in g for g in goldens
    )  # not even queued: different CIDs are different children


async def test_a_corrected_cid_moves_the_record_to_its_child(agencies: dict[str, Caller]) -> None:
    health = (await agencies["health"].create(child(KITTI)))["id"]
    typo = KITTI[:5] + "8" + KITTI[6:]  # one wrong digit: the check digit no longer fits
    made = await agencies["childcare"].create(child(typo))
    admin = agencies["admin"]
    goldens = {g["id"]: g for g in await _goldens(admin, birthdate="2021-03-15")}
    assert len(goldens) == 2  # a broken CID is no identifier: not linked ...
    mine = next(g for g in goldens.values() if made["id"] in link_states(g))
    assert tags(mine) >= {f"{GOLDEN_TAG.split('|')[0]}|review"}  # ... but queued for review,
    assert "th-identity-candidate" not in str(mine)  # beside the golden record, not in its body
    other = next(g for g in goldens if g != mine["id"])
    listed = await admin.post(
        "Patient/$identity-links",
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "patient", "valueReference": {"reference": f"Patient/{made['id']}"}}],
        },
    )
    assert listed.status_code == 200, listed.text
    items = [p for p in listed.json()["parameter"] if p["name"] == "candidate"]
    assert [[q["valueReference"]["reference"] for q in i["part"][:2]] for i in items] == [
        [f"Patient/{mine['id']}", f"Patient/{other}"]
    ]
    fixed = {**made, "identifier": [{"system": CID, "value": KITTI}]}
    reply = await agencies["childcare"].put(f"Patient/{made['id']}", fixed)
    assert reply.status_code == 200, reply.text
    (golden,) = await _goldens(admin, identifier=f"{CID}|{KITTI}")
    assert set(link_states(golden)) == {health, made["id"]}
    old = (await admin.get(f"Patient/{mine['id']}")).json()
    assert old["active"] is False and old["link"] == [
        {"other": {"reference": f"Patient/{golden['id']}"}, "type": "replaced-by"}
    ]


async def test_deleting_the_last_source_deletes_the_golden_record(agencies: dict[str, Caller]) -> None:
    made = (await agencies["childcare"].create(child(KITTI)))["id"]
    (golden,) = await _goldens(agencies["admin"], identifier=f"{CID}|{KITTI}")
    assert (await agencies["childcare"].delete(f"Patient/{made}")).status_code == 204
    assert (await agencies["admin"].get(f"Patient/{golden['id']}")).status_code == 410


async def test_a_guardian_written_later_refreshes_the_same_golden_record(agencies: dict[str, Caller]) -> None:
    made = (await agencies["childcare"].create(child(KITTI)))["id"]
    guardian = {
        "resourceType": "RelatedPerson",
        "patient": {"reference": f"Patient/{made}"},
        "identifier": [{"system": CID, "value": "3100600543211"}],
        "name": [{"text": "นางสมศรี ศรีสุข"}],
    }
    assert (await agencies["childcare"].post("RelatedPerson", guardian)).status_code == 201
    (golden,) = await _goldens(agencies["admin"], identifier=f"{CID}|{KITTI}")  # still one child
    assert set(link_states(golden)) == {made}
    (contact,) = golden["contact"]
    assert contact["extension"][0]["valueIdentifier"]["value"] == "3100600543211"
    assert sources_of(contact) == {f"RelatedPerson/{(await _guardian_id(agencies['childcare'], made))}"}


async def _guardian_id(caller: Caller, patient: str) -> str:
    reply = await caller.get(f"RelatedPerson?patient=Patient/{patient}")
    return str(reply.json()["entry"][0]["resource"]["id"])
