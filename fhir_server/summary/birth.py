"""The birth section: how the child was born (date and time, place, method, gestational age, birth
weight) and the perinatal risk flags the server derived for the child. The mother's pregnancy is hers
and never appears here: only the child's own birth record does."""

from __future__ import annotations

from typing import Any

from fhir_server import canonical
from fhir_server.summary import terms
from fhir_server.summary import xhtml as x
from fhir_server.summary.model import Record, Section, parse_date, profiles, thai_date

_SD = canonical.structure_definition
BIRTH_PROFILE = _SD(canonical.PROFILE_BIRTH)
OBSERVATION_PROFILE = _SD(canonical.PROFILE_BIRTH_OBSERVATION)
RISK_PROFILE = _SD(canonical.PROFILE_PERINATAL_RISK)
RISK_SYSTEM = canonical.code_system(canonical.CS_PERINATAL_RISK)
BIRTH_KINDS = (
    ("Encounter", BIRTH_PROFILE),
    ("Observation", OBSERVATION_PROFILE),
    ("Observation", RISK_PROFILE),
)
_MEASURES = {  # LOINC code -> (Thai, English)
    "8339-4": ("น้ำหนักแรกเกิด", "Birth weight"),
    "76516-4": ("อายุครรภ์เมื่อคลอด", "Gestational age at birth"),
    "9272-6": ("APGAR นาทีที่ 1", "Apgar score at 1 minute"),
}
_EXTENSIONS = (  # extension -> (Thai, English, code system)
    (canonical.EXT_BIRTH_PLACE_TYPE, "สถานที่คลอด", "Place of birth", canonical.CS_MOPH_BIRTH_PLACE),
    (canonical.EXT_DELIVERY_METHOD, "วิธีคลอด", "Delivery method", canonical.CS_MOPH_DELIVERY_TYPE),
    (canonical.EXT_BIRTH_ATTENDANT, "ผู้ทำคลอด", "Birth attendant", canonical.CS_MOPH_BIRTH_ATTENDANT),
)
_INACTIVE = ("entered-in-error", "cancelled")


def _coded(resource: dict[str, Any], extension: str, system: str) -> x.Markup | None:
    url = _SD(extension)
    for ext in resource.get("extension", []) if isinstance(resource.get("extension"), list) else []:
        coding = ext.get("valueCoding") if isinstance(ext, dict) and ext.get("url") == url else None
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            thai, english = terms.display(canonical.code_system(system), coding["code"])
            return x.join(thai or coding["code"], x.english(english))
    return None


def _quantity(value: Any) -> str:
    if not isinstance(value, dict) or value.get("value") is None:
        return "-"
    return f"{value['value']:g} {value.get('unit') or value.get('code') or ''}".strip()


def _loinc(resource: dict[str, Any]) -> str | None:
    return terms.has_code(resource.get("code"), canonical.LOINC_SYSTEM, frozenset(_MEASURES))


def build(record: Record) -> Section:
    section = Section("birth", BIRTH_KINDS)
    births = [e for e in record.of("Encounter") if BIRTH_PROFILE in profiles(e)
              and e.get("status") not in _INACTIVE]
    observations = [o for o in record.of("Observation") if o.get("status") not in _INACTIVE]
    measures = [o for o in observations if _loinc(o) is not None]
    flags = [o for o in observations if RISK_PROFILE in profiles(o) and o.get("valueBoolean") is True
             and terms.has_code(o.get("code"), RISK_SYSTEM) is not None]
    section.entries = [*births, *measures, *flags]
    if not section.entries:
        section.empty_reason = "nilknown"
        section.narrative = x.narrative_div(x.el("p", "ไม่มีข้อมูลการเกิด", x.english("No birth record")))
        return section
    rows: list[list[object]] = []
    for birth in births:
        period = birth.get("period") if isinstance(birth.get("period"), dict) else {}
        start = str(period.get("start") or "")
        when = thai_date(parse_date(start)) + (f" {start[11:16]} น." if len(start) >= 16 else "")
        rows.append([x.join("วันเวลาเกิด", x.english("Born")), when])
        for extension, thai, english, system in _EXTENSIONS:
            shown = _coded(birth, extension, system)
            if shown is not None:
                rows.append([x.join(thai, x.english(english)), shown])
    for observation in sorted(measures, key=lambda o: list(_MEASURES).index(_loinc(o) or "")):
        thai, english = _MEASURES[_loinc(observation) or ""]
        rows.append([x.join(thai, x.english(english)), _quantity(observation.get("valueQuantity"))])
    for flag in flags:
        code = terms.has_code(flag.get("code"), RISK_SYSTEM) or ""
        thai, english = terms.display(RISK_SYSTEM, code)
        rows.append([x.join("ภาวะเสี่ยง", x.english("Risk")), x.join(thai or code, x.english(english))])
    section.view = {"births": births, "measures": measures, "flags": flags}
    section.narrative = x.narrative_div(x.table([x.join("รายการ", x.english("Item")),
                                                 x.join("ข้อมูล", x.english("Value"))], rows))
    return section
