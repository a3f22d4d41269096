"""The R4 vital signs profiles, applied to every vital-signs Observation (observation.html#vitals).

R4: an Observation in the ``vital-signs`` category whose LOINC code is one of the vital signs table
SHALL conform to that code's profile (vitalspanel, resprate, heartrate, oxygensat, bodytemp,
bodyheight, headcircum, bodyweight, bmi, bp), each a constraint on ``vitalsigns``. The table is read
from the core definitions (each profile fixes its LOINC code on ``Observation.code.coding``), so it is
the published one.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_server import definitions

VITAL_SIGNS = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
_LOINC = "http://loinc.org"


@cache
def _profiles_by_code() -> dict[str, str]:
    out: dict[str, str] = {}
    for sd in definitions.structure_definitions():
        if sd.get("baseDefinition") != VITAL_SIGNS:
            continue
        for el in sd["elements"]:
            if el["id"].startswith("Observation.code.coding:") and el["id"].endswith(".code"):
                code = el.get("fixedCode")
                if isinstance(code, str):
                    out[code] = sd["url"]
    return out


def _codings(concept: Any) -> list[dict[str, Any]]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return [c for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []


def profile_for(observation: dict[str, Any]) -> str | None:
    """The vital signs profile ``observation`` must conform to, or None when it is not a vital sign."""
    categories = observation.get("category")
    if not isinstance(categories, list) or not any(
        c.get("system") == _CATEGORY_SYSTEM and c.get("code") == "vital-signs"
        for cat in categories
        for c in _codings(cat)
    ):
        return None
    table = _profiles_by_code()
    for coding in _codings(observation.get("code")):
        if coding.get("system") == _LOINC and coding.get("code") in table:
            return table[coding["code"]]
    return None
