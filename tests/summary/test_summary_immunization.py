"""Immunisation in the summary: the Thai EPI schedule (data) against the doses given, for a child of a
known age: given, due, overdue and the next visit, as an ImmunizationRecommendation."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx

from fhir_server import canonical
from tests.summary.support import FHIR_JSON, computed, sections

MOPH = canonical.code_system(canonical.CS_MOPH_VACCINE)
CVX = "http://hl7.org/fhir/sid/cvx"


def _dose(child: str, on: date, system: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": {"coding": [{"system": system, "code": code}]},
        "patient": {"reference": f"Patient/{child}"},
        "occurrenceDateTime": on.isoformat(),
    }


async def test_doses_given_due_and_overdue_for_a_four_month_old(client: httpx.AsyncClient) -> None:
    born = date.today() - timedelta(days=132)  # 4 months and 10 days old
    reply = await client.put(
        "Patient/baby",
        json={"resourceType": "Patient", "id": "baby", "gender": "male", "birthDate": born.isoformat()},
    )
    assert reply.status_code == 201, reply.text
    doses = [
        (1, CVX, "19"),  # BCG recorded with its CVX code only
        (1, MOPH, "041"),  # hepatitis B birth dose
        (62, MOPH, "D21"),  # DTP-HB-Hib 1
        (62, MOPH, "R11"),  # rotavirus 1; OPV1 was missed
    ]
    for day, system, code in doses:
        assert (
            await client.post(
                "Immunization",
                json=_dose("baby", born + timedelta(days=day), system, code),
                headers=FHIR_JSON,
            )
        ).status_code == 201
    cancelled = {**_dose("baby", born + timedelta(days=62), MOPH, "081"), "status": "not-done"}
    assert (await client.post("Immunization", json=cancelled, headers=FHIR_JSON)).status_code == 201

    bundle = (await client.get("Patient/baby/$summary")).json()
    section = sections(bundle)["immunization"]
    [advice] = computed(bundle, section, "ImmunizationRecommendation")
    status = {
        r["vaccineCode"][0]["coding"][0]["code"]: r["forecastStatus"]["coding"][0]["code"]
        for r in advice["recommendation"]
    }
    assert status == {
        "010": "complete",  # BCG (from its CVX code)
        "041": "complete",
        "D21": "complete",
        "R11": "complete",
        "081": "overdue",  # OPV1: due at 2 months, more than 30 days ago; a not-done record does not count
        "D22": "due",  # the 4-month doses: due now
        "082": "due",
        "401": "due",
        "R12": "due",
        "D23": "due",  # the next visit (6 months): due on its date
        "083": "due",
    }
    by_code = {r["vaccineCode"][0]["coding"][0]["code"]: r for r in advice["recommendation"]}
    due_date = {c["code"]["coding"][0]["code"]: c["value"][:10] for c in by_code["D23"]["dateCriterion"]}
    assert due_date["30980-7"] == (born + timedelta(days=round(6 * 30.4375))).isoformat()
    assert advice["patient"]["reference"].endswith("/Patient/baby")
    div = section["text"]["div"]
    assert "ได้รับแล้ว 4 เข็ม, ถึงกำหนด 4, เลยกำหนด 1" in div
    assert "กรมควบคุมโรค" in div  # the schedule's source is named
