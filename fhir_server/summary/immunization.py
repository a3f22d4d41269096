"""The immunisation section: the Thai EPI schedule (data, with its source) against the doses given,
and the ``ImmunizationRecommendation`` that says what is complete, due and overdue."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from importlib import resources
from typing import Any

from fhir_server import canonical
from fhir_server.summary import terms
from fhir_server.summary import xhtml as x
from fhir_server.summary.model import DAYS_PER_MONTH, Record, Section, derived, effective_date, thai_date

MOPH_VACCINE = canonical.code_system(canonical.CS_MOPH_VACCINE)
CVX = "http://hl7.org/fhir/sid/cvx"
FORECAST_STATUS = "http://terminology.hl7.org/CodeSystem/immunization-recommendation-status"
_DATE_CRITERION = {  # LOINC codes for ImmunizationRecommendation.recommendation.dateCriterion
    "due": ("30980-7", "Date vaccine due"),
    "overdue": ("59778-1", "Date when overdue for immunization"),
}
IMMUNIZATION_KINDS = (("Immunization", None),)


@dataclass
class DoseStatus:
    dose: dict[str, Any]
    due: date
    status: str  # complete | overdue | due | upcoming | missed (past its age limit)
    given: dict[str, Any] | None = None


@cache
def schedule() -> dict[str, Any]:
    text = resources.files("fhir_server.summary").joinpath("data/th-epi-schedule.json")
    return json.loads(text.read_text("utf-8"))  # type: ignore[no-any-return]


def _add_months(born: date, months: float) -> date:
    return born + timedelta(days=round(months * DAYS_PER_MONTH))


def evaluate(
    born: date, gender: str | None, immunizations: list[dict[str, Any]], today: date
) -> list[DoseStatus]:
    """Each scheduled dose for this child with its state on ``today``.

    A dose counts as given when a completed Immunization carries one of its MOPH vaccine codes, or
    else the same CVX code (CVX-only records fill that vaccine's doses in the order they were given).
    """
    spec = schedule()
    grace = timedelta(days=int(spec.get("overdueAfterDays", 30)))
    doses = [d for d in spec["doses"] if d.get("sex") in (None, gender)]
    given = sorted(
        (i for i in immunizations if i.get("status") == "completed"),
        key=lambda i: (effective_date(i) or date.min, str(i.get("id"))),
    )
    matched: dict[str, dict[str, Any]] = {}
    by_code = {code: d["id"] for d in doses for code in d["codes"]}
    cvx_only: list[tuple[str, dict[str, Any]]] = []
    for immunization in given:
        code = terms.has_code(immunization.get("vaccineCode"), MOPH_VACCINE, frozenset(by_code))
        if code is not None:
            matched.setdefault(by_code[code], immunization)
            continue
        cvx = terms.has_code(immunization.get("vaccineCode"), CVX)
        if cvx is not None:
            cvx_only.append((cvx, immunization))
    for cvx, immunization in cvx_only:
        for dose in doses:
            if dose.get("cvx") == cvx and dose["id"] not in matched:
                matched[dose["id"]] = immunization
                break
    out = []
    for dose in doses:
        due = _add_months(born, dose["ageMonths"])
        if dose["id"] in matched:
            out.append(DoseStatus(dose, due, "complete", matched[dose["id"]]))
        elif "notAfterMonths" in dose and today > _add_months(born, dose["notAfterMonths"]):
            out.append(DoseStatus(dose, due, "missed"))
        elif today >= due + grace:
            out.append(DoseStatus(dose, due, "overdue"))
        elif today >= due:
            out.append(DoseStatus(dose, due, "due"))
        else:
            out.append(DoseStatus(dose, due, "upcoming"))
    return out


def _vaccine_code(dose: dict[str, Any]) -> dict[str, Any]:
    codings = [terms.coding(MOPH_VACCINE, dose["codes"][0])]
    if dose.get("cvx"):
        codings.append({"system": CVX, "code": dose["cvx"]})
    return {"coding": codings, "text": dose["display"]}


def recommendation(record: Record, statuses: list[DoseStatus]) -> dict[str, Any]:
    """One ImmunizationRecommendation for the schedule: complete doses with the Immunization that
    satisfied them, then due and overdue ones with their dates, then the next visit's doses."""
    upcoming = [s for s in statuses if s.status == "upcoming"]
    next_visit = min((s.due for s in upcoming), default=None)
    items = []
    spec = schedule()
    for s in statuses:
        if s.status == "missed" or (s.status == "upcoming" and s.due != next_visit):
            continue
        forecast = "due" if s.status == "upcoming" else s.status
        item: dict[str, Any] = {
            "vaccineCode": [_vaccine_code(s.dose)],
            "forecastStatus": {"coding": [terms.coding(FORECAST_STATUS, forecast)]},
            "description": s.dose["display"],
            "series": spec["id"],
        }
        if s.status != "complete":
            overdue_on = s.due + timedelta(days=int(spec.get("overdueAfterDays", 30)))
            item["dateCriterion"] = [
                {
                    "code": {"coding": [{"system": canonical.LOINC_SYSTEM, "code": code, "display": text}]},
                    "value": f"{when.isoformat()}T00:00:00+07:00",
                }
                for (code, text), when in (
                    (_DATE_CRITERION["due"], s.due),
                    (_DATE_CRITERION["overdue"], overdue_on),
                )
            ]
        elif s.given is not None:
            item["supportingImmunization"] = [{"reference": record.url(s.given)}]
        items.append(item)
    return derived(
        {
            "resourceType": "ImmunizationRecommendation",
            "patient": {"reference": record.url(record.patient)},
            "date": f"{record.today.isoformat()}T00:00:00+07:00",
            "authority": {"display": spec["source"].split(":")[0]},
            "recommendation": items,
        }
    )


_STATUS_TEXT = {
    "complete": ("ได้รับแล้ว", "given"),
    "due": ("ถึงกำหนด", "due"),
    "overdue": ("เลยกำหนด", "overdue"),
    "upcoming": ("ยังไม่ถึงกำหนด", "not yet due"),
    "missed": ("พ้นช่วงอายุที่ให้ได้", "past the age it can be given"),
}


def build(record: Record) -> Section:
    section = Section("immunization", IMMUNIZATION_KINDS)
    born = record.birth_date
    immunizations = [i for i in record.of("Immunization") if i.get("status") != "entered-in-error"]
    if born is None:
        section.entries = immunizations
        section.empty_reason = "unavailable"
        section.narrative = x.narrative_div(x.el("p", "ไม่มีวันเกิดของเด็ก", x.english("No birth date")))
        return section
    statuses = evaluate(born, record.gender, immunizations, record.today)
    advice = recommendation(record, statuses)
    section.entries = [*immunizations, advice]
    section.view = {"statuses": statuses, "source": schedule()["source"]}
    counts = {k: sum(1 for s in statuses if s.status == k) for k in _STATUS_TEXT}
    rows = []
    for s in statuses:
        thai, english = _STATUS_TEXT[s.status]
        given = effective_date(s.given) if s.given else None
        rows.append(
            [
                x.join(s.dose["display"], x.english(s.dose.get("displayEnglish"))),
                thai_date(s.due),
                x.join(thai, x.english(english)),
                thai_date(given) if given else "-",
            ]
        )
    section.narrative = x.narrative_div(
        x.el(
            "p",
            f"ได้รับแล้ว {counts['complete']} เข็ม, ถึงกำหนด {counts['due']}, เลยกำหนด {counts['overdue']}",
            x.english(f"{counts['complete']} given, {counts['due']} due, {counts['overdue']} overdue"),
        ),
        x.table(["วัคซีน", "กำหนดให้", "สถานะ", "วันที่ได้รับ"], rows),
        x.el("p", "ตามตาราง: ", schedule()["source"]),
    )
    return section
