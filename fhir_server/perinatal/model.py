"""What the perinatal records look like: the codes and profiles that identify them, and small readers
over their JSON (references, extensions, dates, quantities) shared by the flags and the hooks."""

from __future__ import annotations

from datetime import date
from typing import Any

from fhir_server import canonical

LOINC = canonical.LOINC_SYSTEM
BIRTH_WEIGHT = "8339-4"  # Birthweight
GESTATIONAL_AGE_AT_BIRTH = "76516-4"  # Gestational age--at birth
APGAR_1_MIN = "9272-6"  # 1 minute Apgar Score

EVENT_SYSTEM = canonical.code_system(canonical.CS_PERINATAL_EVENT)
RISK_SYSTEM = canonical.code_system(canonical.CS_PERINATAL_RISK)
SCREENING_SYSTEM = canonical.code_system(canonical.CS_PERINATAL_SCREENING)
WORKFLOW_EPISODE = canonical.EXT_WORKFLOW_EPISODE
GESTATIONAL_AGE_EXT = canonical.structure_definition(canonical.EXT_GESTATIONAL_AGE)
LMP_EXT = canonical.structure_definition(canonical.EXT_LAST_MENSTRUAL_PERIOD)

PREGNANCY_PROFILE = canonical.structure_definition(canonical.PROFILE_PREGNANCY)
ANTENATAL_PROFILE = canonical.structure_definition(canonical.PROFILE_ANTENATAL_VISIT)
DELIVERY_PROFILE = canonical.structure_definition(canonical.PROFILE_DELIVERY)
RISK_PROFILE = canonical.structure_definition(canonical.PROFILE_PERINATAL_RISK)

# Flags about the newborn (subject: the child) and about the pregnancy (subject: the mother).
NEWBORN_FLAGS = ("low-birth-weight", "preterm", "birth-asphyxia")
PREGNANCY_FLAGS = ("teenage-mother", "late-first-anc", "few-anc-visits")
RISK_DISPLAY = {
    "low-birth-weight": "ทารกน้ำหนักแรกเกิดน้อย (ต่ำกว่า 2,500 กรัม)",
    "preterm": "คลอดก่อนกำหนด (อายุครรภ์ต่ำกว่า 37 สัปดาห์)",
    "birth-asphyxia": "ภาวะขาดออกซิเจนแรกคลอด (APGAR นาทีที่ 1 ต่ำกว่า 7)",
    "teenage-mother": "มารดาวัยรุ่น (อายุต่ำกว่า 20 ปีเมื่อคลอด)",
    "late-first-anc": "ฝากครรภ์ครั้งแรกช้า (อายุครรภ์เกิน 12 สัปดาห์)",
    "few-anc-visits": "ฝากครรภ์ไม่ครบตามเกณฑ์",
}
_INACTIVE = ("entered-in-error", "cancelled", "not-done", "stopped")


def profiles(resource: dict[str, Any]) -> list[str]:
    meta = resource.get("meta")
    claimed = meta.get("profile") if isinstance(meta, dict) else None
    return [p.split("|", 1)[0] for p in claimed if isinstance(p, str)] if isinstance(claimed, list) else []


def has_coding(concepts: Any, system: str, code: str) -> bool:
    """True when a CodeableConcept (or a list of them) carries the coding ``system|code``."""
    for concept in concepts if isinstance(concepts, list) else [concepts]:
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for coding in codings if isinstance(codings, list) else []:
            if isinstance(coding, dict) and coding.get("system") == system and coding.get("code") == code:
                return True
    return False


def is_active(resource: dict[str, Any]) -> bool:
    return resource.get("status") not in _INACTIVE


def ref_id(reference: Any, resource_type: str) -> str | None:
    """The id in a literal reference to ``resource_type`` (relative, absolute or versioned), else None."""
    text = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(text, str):
        return None
    parts = text.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2] == resource_type and parts[-1]:
        return parts[-1]
    return None


def extension_values(resource: dict[str, Any], url: str) -> list[Any]:
    out = []
    for ext in resource.get("extension", []) if isinstance(resource.get("extension"), list) else []:
        if isinstance(ext, dict) and ext.get("url") == url:
            out.extend(v for k, v in ext.items() if k.startswith("value"))
    return out


def episode_ids(resource: dict[str, Any]) -> list[str]:
    """The episodes of care a record belongs to: ``episodeOfCare`` (Encounter) or HL7's
    workflow-episodeOfCare extension (Observation, Procedure)."""
    refs = resource.get("episodeOfCare") if resource.get("resourceType") == "Encounter" else None
    candidates = list(refs) if isinstance(refs, list) else []
    candidates += extension_values(resource, WORKFLOW_EPISODE)
    found = [ref_id(r, "EpisodeOfCare") for r in candidates]
    return list(dict.fromkeys(i for i in found if i))


def day(value: Any) -> date | None:
    """The calendar date of a FHIR date or dateTime (None when absent or partial)."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def weeks(quantity: Any) -> float | None:
    """A gestational age in weeks from a Quantity in ``wk`` (or days, ``d``)."""
    if not isinstance(quantity, dict) or not isinstance(quantity.get("value"), int | float):
        return None
    unit = quantity.get("code") or quantity.get("unit")
    if unit in ("wk", "week", "weeks"):
        return float(quantity["value"])
    if unit in ("d", "day", "days"):
        return float(quantity["value"]) / 7
    return None


def grams(quantity: Any) -> float | None:
    """A weight in grams from a Quantity in ``g`` or ``kg``."""
    if not isinstance(quantity, dict) or not isinstance(quantity.get("value"), int | float):
        return None
    unit = quantity.get("code") or quantity.get("unit")
    if unit == "g":
        return float(quantity["value"])
    if unit == "kg":
        return float(quantity["value"]) * 1000
    return None


def score(value: Any) -> float | None:
    """An Apgar score from a Quantity or an integer."""
    if isinstance(value, dict):
        value = value.get("value")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def age_on(birth: date, on: date) -> int:
    """Whole years of age on a day."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def is_pregnancy(resource: dict[str, Any]) -> bool:
    return resource.get("resourceType") == "EpisodeOfCare" and (
        PREGNANCY_PROFILE in profiles(resource) or has_coding(resource.get("type"), EVENT_SYSTEM, "pregnancy")
    )


def is_antenatal_visit(resource: dict[str, Any]) -> bool:
    return resource.get("resourceType") == "Encounter" and (
        ANTENATAL_PROFILE in profiles(resource) or has_coding(resource.get("type"), EVENT_SYSTEM, "antenatal")
    )


def is_delivery(resource: dict[str, Any]) -> bool:
    return resource.get("resourceType") == "Procedure" and (
        DELIVERY_PROFILE in profiles(resource) or has_coding(resource.get("code"), EVENT_SYSTEM, "delivery")
    )


def newborn_measure(resource: dict[str, Any]) -> str | None:
    """Which newborn birth observation an Observation is (the LOINC code), else None."""
    if resource.get("resourceType") != "Observation":
        return None
    for code in (BIRTH_WEIGHT, GESTATIONAL_AGE_AT_BIRTH, APGAR_1_MIN):
        if has_coding(resource.get("code"), LOINC, code):
            return code
    return None
