"""Patient/$summary for a generated child with a full record (auth off: the content; consent is in
test_summary_consent.py): every section holds what was written, and the document Bundle is sound."""

from __future__ import annotations

import json
from datetime import date, timedelta
from importlib import resources
from typing import Any

import httpx

from fhir_server import canonical
from tests.summary.support import (
    DEVELOPMENT,
    FHIR_JSON,
    GROWTH,
    WELLBEING,
    computed,
    entry_ids,
    full_record,
    load_full_record,
    of_child,
    sections,
)

MOPH_VACCINE = canonical.code_system(canonical.CS_MOPH_VACCINE)
LEVEL = canonical.code_system(canonical.CS_WELLBEING_LEVEL)
OPEN_TASK = {"draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold"}


def _ids(resources: list[dict[str, Any]]) -> set[str]:
    return {f"{r['resourceType']}/{r['id']}" for r in resources}


def _resolves(bundle: dict[str, Any]) -> list[str]:
    """References anywhere in the document that do not resolve to an entry of the Bundle."""
    urls = {e["fullUrl"] for e in bundle["entry"]}
    base = next(u for u in urls if not u.startswith("urn:")).rsplit("/", 2)[0]
    missing: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            ref = value.get("reference")
            if isinstance(ref, str) and not ref.startswith("#"):
                target = ref if ref.startswith(("urn:", "http")) else f"{base}/{ref}"
                if target not in urls:
                    missing.append(ref)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for entry in bundle["entry"]:
        walk(entry["resource"])
    return missing


async def test_every_section_holds_what_was_written(client: httpx.AsyncClient) -> None:
    _, household, child = full_record()
    await load_full_record(client)
    reply = await client.get(f"Patient/{child['id']}/$summary")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("application/fhir+json")
    bundle = reply.json()
    found = sections(bundle)
    assert list(found) == [
        "identity",
        "guardians",
        "birth",
        "growth",
        "development",
        "immunization",
        "referrals",
        "wellbeing",
        "consents",
    ]

    # Identity and guardians.
    assert entry_ids(bundle, found["identity"]) == {f"Patient/{child['id']}"}
    assert entry_ids(bundle, found["guardians"]) == _ids(of_child(household, child, "RelatedPerson"))

    # Growth: every growth measurement written, and z-scores for the latest ones.
    observations = of_child(household, child, "Observation")
    growth = [o for o in observations if GROWTH in o.get("meta", {}).get("profile", [])]
    assert _ids(growth) <= entry_ids(bundle, found["growth"])
    scores = computed(bundle, found["growth"], "Observation")
    indicators = {s["code"]["coding"][0]["code"] for s in scores}
    assert {"wfa", "lhfa"} <= indicators
    latest_weight = max(
        (o for o in growth if o["code"]["coding"][0]["code"] == "29463-7"),
        key=lambda o: o["effectiveDateTime"],
    )
    wfa = next(s for s in scores if s["code"]["coding"][0]["code"] == "wfa")
    if (
        date.fromisoformat(latest_weight["effectiveDateTime"][:10]) - date.fromisoformat(child["birthDate"])
    ).days <= 3652:
        assert wfa["effectiveDateTime"] == latest_weight["effectiveDateTime"][:10]
        assert any(d["reference"].endswith(f"Observation/{latest_weight['id']}") for d in wfa["derivedFrom"])
    assert all(-5 < s["valueQuantity"]["value"] < 5 for s in scores)
    assert all(
        s["interpretation"][0]["coding"][0]["code"].startswith(s["code"]["coding"][0]["code"]) for s in scores
    )

    # Development: every screening, the latest result named.
    screenings = [o for o in observations if DEVELOPMENT in o.get("meta", {}).get("profile", [])]
    assert entry_ids(bundle, found["development"]) == _ids(screenings)
    latest = max(screenings, key=lambda o: o["effectiveDateTime"])
    latest_result = latest["valueCodeableConcept"]["coding"][0]["display"]
    assert latest_result in found["development"]["text"]["div"]

    # Immunisation: every dose given, each satisfying one schedule item; what is due by age.
    given = of_child(household, child, "Immunization")
    assert _ids(given) <= entry_ids(bundle, found["immunization"])
    [advice] = computed(bundle, found["immunization"], "ImmunizationRecommendation")
    status = {
        r["vaccineCode"][0]["coding"][0]["code"]: r["forecastStatus"]["coding"][0]["code"]
        for r in advice["recommendation"]
    }
    supporting = [
        s["reference"].rsplit("/", 1)[1]
        for r in advice["recommendation"]
        for s in r.get("supportingImmunization", [])
    ]
    assert sorted(supporting) == sorted(i["id"] for i in given)
    schedule = json.loads(
        resources.files("fhir_server.summary").joinpath("data/th-epi-schedule.json").read_text()
    )
    born = date.fromisoformat(child["birthDate"])
    given_codes = {
        c["code"] for i in given for c in i["vaccineCode"]["coding"] if c["system"] == MOPH_VACCINE
    }
    for dose in schedule["doses"]:
        if dose.get("sex", child["gender"]) != child["gender"]:
            continue
        due = born + timedelta(days=round(dose["ageMonths"] * 30.4375))
        code = dose["codes"][0]
        if given_codes & set(dose["codes"]):
            assert status[code] == "complete", dose["id"]
        elif "notAfterMonths" in dose and date.today() > born + timedelta(
            days=round(dose["notAfterMonths"] * 30.4375)
        ):
            assert code not in status, dose["id"]  # past the age it can be given: no longer recommended
        elif date.today() >= due + timedelta(days=schedule["overdueAfterDays"]):
            assert status[code] == "overdue", dose["id"]
        elif date.today() >= due:
            assert status[code] == "due", dose["id"]

    # Referrals: the open ones and those closed within a year, with their Task.
    tasks = of_child(household, child, "Task")
    horizon = (date.today() - timedelta(days=365)).isoformat()
    expected = set()
    for task in tasks:
        request_id = task["basedOn"][0]["reference"].rsplit("/", 1)[1]
        if task["status"] in OPEN_TASK or task["lastModified"][:10] >= horizon:
            expected |= {f"ServiceRequest/{request_id}", f"Task/{task['id']}"}
    assert entry_ids(bundle, found["referrals"]) == expected
    for task in tasks:
        if f"Task/{task['id']}" in expected:
            assert task.get("businessStatus", {}).get("text", "") in found["referrals"]["text"]["div"]

    # Wellbeing: the latest flower, each petal's level named.
    flowers = [o for o in observations if WELLBEING in o.get("meta", {}).get("profile", [])]
    newest = max(flowers, key=lambda o: o["effectiveDateTime"])
    assert entry_ids(bundle, found["wellbeing"]) == {f"Observation/{newest['id']}"}
    for component in newest["component"]:
        assert component["valueCodeableConcept"]["coding"][0]["display"] in found["wellbeing"]["text"]["div"]

    # Consents: the active ones.
    active = [c for c in of_child(household, child, "Consent") if c["status"] == "active"]
    assert entry_ids(bundle, found["consents"]) == _ids(active)
    assert ("emptyReason" in found["consents"]) == (not active)


async def test_the_document_bundle_is_sound_and_validates(client: httpx.AsyncClient) -> None:
    _, _, child = full_record()
    await load_full_record(client)
    bundle = (await client.get(f"Patient/{child['id']}/$summary")).json()
    assert bundle["type"] == "document"
    assert (
        bundle["identifier"]["system"] == f"{canonical.BASE}/id/child-summary"
        and bundle["identifier"]["value"]
    )
    assert bundle["timestamp"].endswith("Z")
    composition = bundle["entry"][0]["resource"]
    assert composition["resourceType"] == "Composition" and composition["status"] == "final"
    assert composition["subject"]["reference"] == f"http://testserver/fhir/Patient/{child['id']}"
    assert len({e["fullUrl"] for e in bundle["entry"]}) == len(bundle["entry"])
    assert _resolves(bundle) == []  # every reference, the Composition's and the entries', is in the Bundle
    for section in sections(bundle).values():
        div = section["text"]["div"]
        assert div.startswith('<div xmlns="http://www.w3.org/1999/xhtml"') and "<script" not in div
        assert bool(section.get("emptyReason")) != bool(section.get("entry")) or "section" in section
    reply = await client.post("Bundle/$validate", json=bundle, headers=FHIR_JSON)
    assert reply.status_code == 200, reply.text
    errors = [i for i in reply.json()["issue"] if i["severity"] in ("error", "fatal")]
    assert errors == []
    # A second summary is a new document.
    again = (await client.get(f"Patient/{child['id']}/$summary")).json()
    assert again["identifier"]["value"] != bundle["identifier"]["value"]


async def test_formats_json_by_default_the_page_on_request(client: httpx.AsyncClient) -> None:
    reply = await client.put("Patient/p1", json={"resourceType": "Patient", "id": "p1", "gender": "female"})
    assert reply.status_code == 201
    for params, headers, kind in (
        ({}, {}, "application/fhir+json"),
        ({"_format": "json"}, {}, "application/fhir+json"),
        ({}, {"Accept": "application/fhir+json"}, "application/fhir+json"),
        ({"_format": "html"}, {}, "text/html"),
        ({}, {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, "text/html"),
        ({}, {"Accept": "application/fhir+json, text/html;q=0.5"}, "application/fhir+json"),
    ):
        reply = await client.get("Patient/p1/$summary", params=params, headers=headers)
        assert reply.status_code == 200, (params, headers, reply.text)
        assert reply.headers["content-type"].startswith(kind), (params, headers)
        if kind == "text/html":
            policy = reply.headers["content-security-policy"]
            assert (
                "default-src 'none'" in policy and "style-src 'sha256-" in policy and "script" not in policy
            )
            # A child with no birth date: growth and immunisation cannot be computed, and say so.
            assert "ไม่มีวันเกิด" in reply.text
    for params, headers in (({"_format": "xml"}, {}), ({}, {"Accept": "application/fhir+xml"})):
        reply = await client.get("Patient/p1/$summary", params=params, headers=headers)
        assert reply.status_code == 406, (params, headers, reply.text)
