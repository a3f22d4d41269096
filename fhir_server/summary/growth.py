"""The growth section: measurements over time, WHO z-scores, the Thai reading of them, and the
measurements no child can have (flagged, never interpreted or plotted as if true)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

from fhir_server import canonical
from fhir_server.summary import terms, who
from fhir_server.summary import xhtml as x
from fhir_server.summary.model import Record, Section, derived, effective_date, profiles, thai_age, thai_date

LOINC = canonical.LOINC_SYSTEM
UCUM = canonical.UCUM_SYSTEM
INDICATOR_SYSTEM = canonical.code_system(canonical.CS_GROWTH_INDICATOR)
STATUS_SYSTEM = canonical.code_system(canonical.CS_NUTRITION_STATUS)
_KIND_BY_LOINC = {
    "29463-7": "weight",
    "3141-9": "weight",
    "8339-4": "weight",  # birth weight
    "8302-2": "length",
    "8306-3": "length",  # lying
    "8308-9": "length",  # standing
    "9843-4": "head",
    "8287-5": "head",
    "39156-5": "bmi",  # shown as written; the z-score uses the BMI of the visit's weight and height
}
_LYING = {"8306-3": True, "8308-9": False}
_TO_KG = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237}
_TO_CM = {"cm": 1.0, "m": 100.0, "mm": 0.1, "[in_i]": 2.54}
_UNITS = {"weight": _TO_KG, "length": _TO_CM, "head": _TO_CM}
_STANDARD = {
    "2006": "WHO Child Growth Standards 2006",
    "2007": "WHO Growth Reference 2007 (5-19 years)",
}
GROWTH_KINDS = (("Observation", canonical.structure_definition(canonical.PROFILE_GROWTH)),)


@dataclass
class Measurement:
    kind: str  # weight | length | head
    value: float | None  # kg or cm; None when the unit is not understood
    on: date
    age_days: int
    source: dict[str, Any]
    recumbent: bool | None = None
    problem: str | None = None  # why it is flagged (never plotted nor interpreted)


@dataclass
class Visit:
    on: date
    age_days: int
    measurements: dict[str, Measurement] = field(default_factory=dict)
    z: dict[str, who.ZScore] = field(default_factory=dict)


@cache
def classification() -> dict[str, Any]:
    text = resources.files("fhir_server.summary").joinpath("data/th-growth-classification.json")
    return json.loads(text.read_text("utf-8"))  # type: ignore[no-any-return]


def band(indicator: str, z: float) -> dict[str, Any] | None:
    """The Thai growth-monitoring band of a z-score (data in th-growth-classification.json)."""
    spec = classification()["indicators"].get(indicator)
    for entry in spec["bands"] if spec else []:
        if entry.get("zFrom", -99.0) <= z < entry.get("zBelow", 99.0):
            return entry  # type: ignore[no-any-return]
    return None


def _loinc(resource: dict[str, Any]) -> str | None:
    return terms.has_code(resource.get("code"), LOINC, frozenset(_KIND_BY_LOINC))


def _is_growth(resource: dict[str, Any]) -> bool:
    return GROWTH_KINDS[0][1] in profiles(resource) or _loinc(resource) is not None


def _measurement(record: Record, resource: dict[str, Any], code: str) -> Measurement | None:
    on = effective_date(resource)
    born = record.birth_date
    if on is None or born is None or resource.get("status") in ("entered-in-error", "cancelled"):
        return None
    kind = _KIND_BY_LOINC[code]
    if kind == "bmi":
        return None
    m = Measurement(kind, None, on, (on - born).days, resource, recumbent=_LYING.get(code))
    quantity = resource.get("valueQuantity")
    if not isinstance(quantity, dict):
        return None
    raw = quantity.get("value")
    if not isinstance(raw, int | float) or isinstance(raw, bool):
        return None
    unit = str(quantity.get("code") or quantity.get("unit") or "")
    factor = _UNITS[kind].get(unit)
    if factor is None:
        m.problem = f"หน่วย '{unit}' ใช้กับค่านี้ไม่ได้ (unit '{unit}' is not a unit of {kind})"
        return m
    m.value = float(raw) * factor
    if m.age_days < 0:
        m.problem = "วันที่วัดก่อนวันเกิด (measured before the date of birth)"
    return m


def _visits(record: Record) -> tuple[list[Visit], list[Measurement]]:
    by_day: dict[date, Visit] = {}
    flagged: list[Measurement] = []
    for resource in record.of("Observation"):
        code = _loinc(resource)
        if code is None:
            continue
        m = _measurement(record, resource, code)
        if m is None:
            continue
        if m.problem:
            flagged.append(m)
            continue
        visit = by_day.setdefault(m.on, Visit(m.on, m.age_days))
        if m.kind not in visit.measurements or code != "8339-4":
            visit.measurements[m.kind] = m
    return [by_day[d] for d in sorted(by_day)], flagged


def _score(record: Record, visit: Visit, flagged: list[Measurement]) -> None:
    gender = record.gender or ""
    weight, length, head = (visit.measurements.get(k) for k in ("weight", "length", "head"))
    age = visit.age_days

    def attempt(indicator: str, m: Measurement, compute: Any) -> bool:
        try:
            visit.z[indicator] = compute()
            return True
        except who.Implausible as exc:
            m.problem = f"ค่าที่วัดได้เป็นไปไม่ได้ ({exc})"
            flagged.append(m)
            visit.measurements.pop(m.kind, None)
            return False
        except ValueError:
            return True  # outside the references' ages: nothing to say, nothing wrong

    if (
        weight is not None
        and weight.value is not None
        and not attempt("wfa", weight, lambda: who.zscore("wfa", gender, age, weight.value))
    ):
        weight = None
    if (
        length is not None
        and length.value is not None
        and not attempt(
            "lhfa", length, lambda: who.zscore("lhfa", gender, age, length.value, recumbent=length.recumbent)
        )
    ):
        length = None
    if head is not None and head.value is not None:
        attempt("hcfa", head, lambda: who.zscore("hcfa", gender, age, head.value))
    if weight is not None and length is not None and weight.value and length.value:
        w, h = weight.value, length.value
        if age <= 1856:
            attempt("wflh", weight, lambda: who.weight_for_length(gender, age, w, h))
        if age > 1856 or "wflh" not in visit.z:
            attempt("bmifa", weight, lambda: who.zscore("bmifa", gender, age, w / (h / 100) ** 2))


def _zscore_observation(record: Record, visit: Visit, z: who.ZScore) -> dict[str, Any]:
    sources = [m.source for m in visit.measurements.values()]
    entry = band(z.indicator, z.value)
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {"coding": [{"system": canonical.OBSERVATION_CATEGORY_SYSTEM, "code": "exam", "display": "Exam"}]}
        ],
        "code": {"coding": [terms.coding(INDICATOR_SYSTEM, z.indicator)]},
        "subject": {"reference": record.url(record.patient)},
        "effectiveDateTime": visit.on.isoformat(),
        "valueQuantity": {"value": z.value, "unit": "z-score", "system": UCUM, "code": "1"},
        "method": {"text": _STANDARD["2006" if visit.age_days <= 1856 else "2007"]},
        "derivedFrom": [{"reference": record.url(s)} for s in sources],
    }
    if entry is not None:
        resource["interpretation"] = [{"coding": [terms.coding(STATUS_SYSTEM, entry["code"])]}]
    return derived(resource)


def _flag_observation(record: Record, m: Measurement) -> dict[str, Any]:
    indicator = {"weight": "wfa", "length": "lhfa", "head": "hcfa"}[m.kind]
    return derived(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [terms.coding(INDICATOR_SYSTEM, indicator)]},
            "subject": {"reference": record.url(record.patient)},
            "effectiveDateTime": m.on.isoformat(),
            "dataAbsentReason": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "error"}
                ]
            },
            "interpretation": [{"coding": [terms.coding(STATUS_SYSTEM, "implausible")]}],
            "note": [{"text": m.problem or ""}],
            "derivedFrom": [{"reference": record.url(m.source)}],
        }
    )


def _value(m: Measurement | None, unit: str) -> str:
    if m is None or m.value is None:
        return "-"
    return f"{m.value:.1f} {unit}"


def _z_text(visit: Visit, indicator: str) -> str:
    z = visit.z.get(indicator)
    return f"{z.value:+.2f}" if z else "-"


def _label(code: str) -> x.Markup:
    thai, english = terms.display(STATUS_SYSTEM, code)
    return x.join(thai or code, x.english(english))


def build(record: Record) -> Section:
    section = Section("growth", GROWTH_KINDS)
    if record.birth_date is None or record.gender not in ("male", "female"):
        section.empty_reason = "unavailable"
        section.narrative = x.narrative_div(
            x.el("p", "ไม่มีวันเกิดหรือเพศของเด็ก จึงคำนวณ z-score ไม่ได้", x.english("No birth date or sex"))
        )
        return section
    visits, flagged = _visits(record)
    for visit in visits:
        _score(record, visit, flagged)
    visits = [v for v in visits if v.measurements]
    latest: dict[str, tuple[Visit, who.ZScore]] = {}
    for visit in visits:
        for indicator, z in visit.z.items():
            latest[indicator] = (visit, z)
    flags: dict[str, str] = {}
    derived_obs: list[dict[str, Any]] = []
    for indicator, (visit, z) in sorted(latest.items()):
        entry = band(indicator, z.value)
        if entry and entry.get("flag"):
            flags.setdefault(entry["flag"], indicator)
        derived_obs.append(_zscore_observation(record, visit, z))
    flag_obs = [_flag_observation(record, m) for m in flagged]
    written = [r for r in record.of("Observation") if _is_growth(r)]
    section.entries = [*written, *derived_obs, *flag_obs]
    if not written:
        section.empty_reason = "nilknown"
    section.view = {
        "visits": visits,
        "flagged": flagged,
        "latest": latest,
        "flags": flags,
        "gender": record.gender,
    }
    section.narrative = _narrative(record, visits, latest, flags, flagged)
    return section


def _narrative(
    record: Record,
    visits: list[Visit],
    latest: dict[str, tuple[Visit, who.ZScore]],
    flags: dict[str, str],
    flagged: list[Measurement],
) -> str:
    parts: list[x.Markup] = []
    if not visits and not flagged:
        return x.narrative_div(x.el("p", "ไม่มีข้อมูลการชั่งน้ำหนักวัดส่วนสูง", x.english("No growth measurements")))
    if flags:
        parts.append(x.el("p", x.el("b", "ข้อควรระวัง: "), *(x.join(_label(f), " ") for f in sorted(flags))))
    else:
        parts.append(x.el("p", "ไม่พบภาวะทุพโภชนาการจากการวัดครั้งล่าสุด", x.english("No malnutrition flags")))
    rows = []
    for indicator, (visit, z) in sorted(latest.items()):
        thai, english = terms.display(INDICATOR_SYSTEM, indicator)
        entry = band(indicator, z.value)
        rows.append(
            [
                x.join(thai or indicator, x.english(english)),
                f"{z.value:+.2f}",
                _label(entry["code"]) if entry else "-",
                thai_date(visit.on),
            ]
        )
    parts.append(x.el("h3", "ค่าล่าสุด", x.english("Latest z-scores (WHO)")))
    parts.append(x.table(["ดัชนี", "z-score", "การแปลผล", "วันที่วัด"], rows))
    trend = [
        [
            thai_date(v.on),
            thai_age(v.age_days),
            _value(v.measurements.get("weight"), "กก."),
            _value(v.measurements.get("length"), "ซม."),
            _z_text(v, "wfa"),
            _z_text(v, "lhfa"),
            _z_text(v, "wflh") if "wflh" in v.z else _z_text(v, "bmifa"),
        ]
        for v in visits[-12:]
    ]
    parts.append(x.el("h3", "แนวโน้ม", x.english("Trend, latest 12 visits")))
    parts.append(
        x.table(["วันที่", "อายุ", "น้ำหนัก", "ส่วนสูง", "z น้ำหนัก/อายุ", "z ส่วนสูง/อายุ", "z น้ำหนัก/ส่วนสูง"], trend)
    )
    if flagged:
        parts.append(x.el("h3", "ค่าที่ผิดปกติ ไม่นำมาแปลผลหรือลงกราฟ", x.english("Implausible, not plotted")))
        parts.append(
            x.el(
                "ul",
                *(x.el("li", f"{thai_date(m.on)}: {m.problem}") for m in sorted(flagged, key=lambda m: m.on)),
            )
        )
    return x.narrative_div(*parts)
